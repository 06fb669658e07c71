"""Module: the base of every layer: finds its parameters and buffers, names them, and saves and
loads them (state_dict); Sequential, modules applied one after another. As torch.nn.Module.

A Module finds its parameters by looking at its attributes: any Tensor with requires_grad=True
is a parameter, and any Module (or list of Modules) attribute is searched too. Parameters are
named by their attribute path, "0.weight" in a Sequential, exactly as PyTorch names them, so a
state_dict maps one to one between the two (and `draw_graph(loss, names=model)` shows them).
The layers themselves are in nn.py, which is where a program reaches this class: `nn.Module`.
"""

from __future__ import annotations

import numpy as np

from .tensor import Tensor


class Module:
    """Base class of layers and models. Subclasses set attributes in __init__ and define forward()."""

    training = True

    def __call__(self, *inputs, **options):
        return self.forward(*inputs, **options)

    def forward(self, *inputs):
        """The layer's computation on Tensors; `module(x)` calls it. Subclasses define it."""
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def named_parameters(self, prefix=""):
        """Yield (name, tensor) for every parameter, each shared tensor once."""
        seen = set()
        for name, value in vars(self).items():
            for path, parameter in _parameters_in(value, prefix + name):
                if id(parameter) not in seen:
                    seen.add(id(parameter))
                    yield path, parameter

    def parameters(self):
        """The list of parameters (tensors with requires_grad=True), in definition order."""
        return [parameter for _, parameter in self.named_parameters()]

    def modules(self):
        """This module and every module inside it, depth first."""
        found = [self]
        for value in vars(self).values():
            for child in value if isinstance(value, (list, tuple)) else (value,):
                if isinstance(child, Module):
                    found.extend(child.modules())
        return found

    def zero_grad(self):
        """Forget every parameter's gradient (set .grad to None)."""
        for parameter in self.parameters():
            parameter.grad = None

    def train(self, mode=True):
        """Set training mode (matters to layers such as dropout); returns self."""
        for module in self.modules():
            module.training = mode
        return self

    def eval(self):
        """Set evaluation mode; returns self."""
        return self.train(False)

    def register_buffer(self, name, array):
        """Keep `array` (an ndarray: running statistics, a counter) as attribute `name`, saved in state_dict
        after the parameters, as torch's register_buffer; no gradient, the optimizer never sees it."""
        if not isinstance(array, np.ndarray):
            raise TypeError(f"register_buffer({name!r}) takes a numpy array, not {type(array).__name__}")
        setattr(self, name, array)
        if name not in vars(self).setdefault("_buffer_names", []):
            self._buffer_names.append(name)

    def named_buffers(self, prefix=""):
        """Yield (name, array) for every buffer of this module and the modules inside it, as PyTorch names them."""
        for path, value, kind in self._named_state(prefix):
            if kind == "buffer":
                yield path, value

    def buffers(self):
        """The list of buffers (running statistics and the like), in definition order."""
        return [array for _, array in self.named_buffers()]

    def _named_state(self, prefix="", seen=None):
        """(name, tensor or array, "parameter" or "buffer"): a module's parameters, then its buffers, then its
        children's, the order of PyTorch's state_dict; a shared parameter once."""
        seen, children = set() if seen is None else seen, []
        for name, value in vars(self).items():
            for index, item in enumerate(value) if isinstance(value, (list, tuple)) else [(None, value)]:
                path = prefix + name + ("" if index is None else f".{index}")
                if isinstance(item, Tensor) and item.requires_grad and id(item) not in seen:
                    seen.add(id(item))
                    yield path, item, "parameter"
                elif isinstance(item, Module):
                    children.append((path, item))
        for name in vars(self).get("_buffer_names", ()):
            yield prefix + name, getattr(self, name), "buffer"
        for path, child in children:
            yield from child._named_state(path + ".", seen)

    def state_dict(self):
        """{name: a copy of its ndarray} for every parameter and buffer (running statistics), in PyTorch's
        order: everything needed to rebuild the model."""
        return {name: np.array(value.data if kind == "parameter" else value) for name, value, kind in self._named_state()}

    def load_state_dict(self, state):
        """Copy arrays from `state` into the parameters and buffers in place, after checking names, shapes and dtypes."""
        own = {name: value.data if kind == "parameter" else value for name, value, kind in self._named_state()}
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise KeyError(
                f"state_dict does not match {type(self).__name__}: missing {missing or 'nothing'}, "
                f"unexpected {unexpected or 'nothing'}; was it saved from a model of another architecture?"
            )
        for name, target in own.items():
            array = np.asarray(state[name])
            if array.shape != target.shape:
                raise ValueError(
                    f"state_dict['{name}'] has shape {array.shape}, but the model's {name} has shape "
                    f"{target.shape}; the saved model has other layer sizes"
                )
            if array.dtype != target.dtype:
                raise TypeError(f"state_dict['{name}'] has dtype {array.dtype}, the model's has {target.dtype}")
        for name, value, kind in self._named_state():
            if kind == "parameter":
                value.copy_(state[name])  # in place (optimizers keep their references), and counted
            else:
                np.copyto(value, state[name])  # a buffer: in place, the layer keeps its reference

    def __repr__(self):
        children = [f"  ({name}): {value!r}".replace("\n", "\n  ") for name, value in vars(self).items() if isinstance(value, Module)]
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        return f"{type(self).__name__}(\n" + "\n".join(children) + "\n)"

    def extra_repr(self):
        """The settings shown inside the parentheses of repr(module), e.g. `in_features=784, ...`."""
        return ""


def _parameters_in(value, path):
    if isinstance(value, Tensor):
        if value.requires_grad:
            yield path, value
    elif isinstance(value, Module):
        yield from value.named_parameters(prefix=path + ".")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _parameters_in(item, f"{path}.{index}")


class Sequential(Module):
    """Modules applied one after another. Children are named "0", "1", ... as in PyTorch."""

    def __init__(self, *modules):
        for index, module in enumerate(modules):
            setattr(self, str(index), module)
        self.length = len(modules)

    def __getitem__(self, index):
        return getattr(self, str(range(self.length)[index]))

    def __len__(self):
        return self.length

    def __iter__(self):
        return (self[index] for index in range(self.length))

    def forward(self, x):
        for index in range(self.length):
            x = getattr(self, str(index))(x)  # the child named "0", then "1", ...
        return x
