"""The lab: what runs experiments around the engine (it uses the engine; the engine never imports it).

    run          settings and the command line, the run session, Ctrl-C, evaluation
    checkpoint   atomic .npz checkpoints under one checksum, never unpickled
    datasets     the dataset table (MNIST, Fashion-MNIST), its search and download; IDX files
    data         normalize, one_hot, batches, random_flip: from a dataset's arrays to a training step
    digits       your own digit, preprocessed as MNIST's were
    plots        the figure of a run (matplotlib)
    interop      the way out to PyTorch and back
"""
