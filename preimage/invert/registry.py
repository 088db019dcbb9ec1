"""A tiny name -> function registry: each objective, regularizer and step hook is ONE registered function."""
from ..errors import PreimageError


class Registry(dict):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind

    def register(self, name):
        def add(fn):
            if name in self:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self[name] = fn
            return fn
        return add

    def get_or_fail(self, name):
        if name not in self:
            raise PreimageError(f"unknown {self.kind} {name!r}; expected one of: {', '.join(sorted(self))}")
        return self[name]
