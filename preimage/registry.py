"""Name -> function registries: each layer emitter, nn converter, objective, regularizer, decoder
architecture, experiment or importer is ONE registered function.

    EMITTERS = Registry("Caffe layer type")

    @EMITTERS.register("AbsVal")
    def absval(b, layer, xs): ...

A registry is a dict (look-ups, ``in``, iteration work as usual); registering a name twice is an error,
so a new function can never silently replace an existing one.
"""
from .errors import PreimageError


class Registry(dict):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind

    def register(self, *names):
        """Decorator: register the function under every one of ``names``."""
        def add(fn):
            for name in names:
                if name in self:
                    raise ValueError(f"{self.kind} {name!r} registered twice")
                self[name] = fn
            return fn
        return add

    def get_or_fail(self, name):
        if name not in self:
            raise PreimageError(f"unknown {self.kind} {name!r}; expected one of: {', '.join(sorted(self))}")
        return self[name]
