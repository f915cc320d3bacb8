"""Networks registered by name (torchvision's pattern): keyword-only factories, one registry per family."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

F = TypeVar("F", bound=Callable[..., object])


class Registry(Generic[F]):
    """``register(name)`` decorates a factory; ``get(name)`` returns it (``ValueError`` naming the known ones)."""

    def __init__(self, what: str) -> None:
        self.what = what  # "model", "autoencoder": used in messages
        self._factories: dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        def decorator(factory: F) -> F:
            if name in self._factories:
                raise ValueError(f"{self.what} {name!r} is already registered")
            self._factories[name] = factory
            return factory

        return decorator

    def names(self) -> list[str]:
        return sorted(self._factories)

    def get(self, name: str) -> F:
        try:
            return self._factories[name]
        except KeyError:
            raise ValueError(f"unknown {self.what} {name!r}; registered: {', '.join(self.names())}") from None
