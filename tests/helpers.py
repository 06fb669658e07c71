"""What the engine's tests share: `check_op`, random inputs, and the hypothesis settings and shapes.

`check_op` is the one test every op gets:

    check_op(lambda a, b: a * b, (3, 1), (1, 4), reference=np.multiply)

draws seeded random float64 inputs of those shapes, and checks three things:
  1. forward: the op's output equals `reference`, the same math written in plain numpy;
  2. backward: with a random upstream gradient, the gradient of every input equals central
     differences (tinygrad_mnist.gradcheck), so every output element is weighted differently;
  3. dtype: run again in float32, the output and every gradient stay float32, and agree with the
     float64 run to float32 precision.
"""

from __future__ import annotations

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinygrad_mnist import Tensor, gradcheck

# A handful of shapes per property is enough to reach the size-1 and broadcasting corners, and
# keeps the suite fast on two cores. derandomize=True draws the same examples on every run, so a
# failure reproduces; no database, so nothing is written into the checkout.
PROPERTY = settings(max_examples=25, deadline=None, derandomize=True, database=None)

seeds = st.integers(0, 2**32 - 1)
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
nonscalar_shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)
# pairs of shapes numpy broadcasts together, such as (3, 1) and (4,), or (2, 1, 3) and (5, 1)
broadcast_pairs = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=4).map(
    lambda drawn: drawn.input_shapes
)


@st.composite
def shapes_and_axes(draw, min_dims=0):
    """A shape and an axis argument for it: None, one axis (maybe negative), or a tuple of axes."""
    shape = draw(hnp.array_shapes(min_dims=min_dims, max_dims=3, min_side=1, max_side=4))
    ndim = len(shape)
    if ndim == 0:
        return shape, None
    axis = draw(st.one_of(st.none(), st.integers(-ndim, ndim - 1), hnp.valid_tuple_axes(ndim, min_size=1)))
    return shape, axis


def random_array(shape, rng, values="normal"):
    """A float64 array of `shape` whose values suit the op under test.

    normal    standard normal
    positive  in [0.5, 2]: for log, fractional powers, and divisors
    nonzero   +-[0.5, 2]: for ops with a kink or a pole at 0 (relu, division)
    distinct  all different and at least 0.25 apart: for max, so central differences never
              cross a tie
    """
    if values == "normal":
        return rng.standard_normal(shape)
    if values == "positive":
        return rng.uniform(0.5, 2.0, shape)
    if values == "nonzero":
        return rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)
    if values == "distinct":
        size = int(np.prod(shape))
        return (rng.permutation(size) * 0.25 - size / 8 + rng.uniform(0, 0.1)).reshape(shape)
    raise ValueError(f"unknown kind of values {values!r}")


def check_op(fn, *inputs, reference=None, values="normal", seed=0, atol=1e-5, rtol=1e-3):
    """Check an op's forward value, its gradients and its dtype; return the float64 output Tensor.

    fn         a function of Tensors, e.g. `lambda x: x.sum(axis=1)`; constants (labels, an
               index) are closed over, so every argument of fn is an input to differentiate
    inputs     shapes (random arrays of `values` are drawn for them) or arrays (used as given)
    reference  the same computation in numpy on the float64 arrays, or None where none exists
    """
    rng = np.random.default_rng(seed)
    arrays = [
        random_array(item, rng, values) if isinstance(item, tuple) else np.array(item, dtype=np.float64)
        for item in inputs
    ]

    tensors = [Tensor(array.copy(), requires_grad=True) for array in arrays]
    output = fn(*tensors)
    assert output.dtype == np.float64
    if reference is not None:
        np.testing.assert_allclose(output.data, reference(*arrays), rtol=1e-12, atol=1e-12)

    # one random upstream gradient: d (output * grad_out).sum() weighs each output element differently
    grad_out = rng.standard_normal(output.shape)
    output.backward(grad_out)
    grads64 = [tensor.grad for tensor in tensors]
    assert gradcheck(fn, arrays, grad_out=grad_out, atol=atol, rtol=rtol)

    # the same op in float32: nothing is silently upcast, and the numbers agree
    tensors32 = [Tensor(array.astype(np.float32), requires_grad=True) for array in arrays]
    output32 = fn(*tensors32)
    assert output32.dtype == np.float32, f"float32 inputs gave a {output32.dtype} output"
    np.testing.assert_allclose(output32.data, output.data, rtol=1e-4, atol=1e-5)
    output32.backward(grad_out.astype(np.float32))
    for tensor32, grad64 in zip(tensors32, grads64):
        assert (tensor32.grad is None) == (grad64 is None)
        if grad64 is not None:
            assert tensor32.grad.dtype == np.float32, f"float32 input got a {tensor32.grad.dtype} gradient"
            np.testing.assert_allclose(tensor32.grad, grad64, rtol=1e-3, atol=1e-4)
    return output


def assert_relative_close(actual, expected, tolerance, name="array"):
    """|actual - expected| <= tolerance * |expected|, with the largest element as the scale.

    Elementwise relative error is meaningless for entries that are nearly zero (a bias gradient
    of 1e-17); measured against the array's largest entry it is the error that matters.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    error = float(np.max(np.abs(actual - expected), initial=0.0))
    scale = float(np.max(np.abs(expected), initial=0.0))
    assert error <= tolerance * scale, f"{name}: error {error:.3g} exceeds {tolerance:g} times the largest entry {scale:.3g}"
