"""One registry object per kind (datasets, models, methods, attacks), so a YAML suite can name them."""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

from .errors import UserError, suggest

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> factory table. Registration sits next to the definition; unknown names list the valid ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' registered twice")
            self._items[name] = obj
            return obj

        return add

    def get(self, name: str, where: str = "") -> T:
        if name not in self._items:
            prefix = f"{where}: " if where else ""
            raise UserError(
                f"{prefix}unknown {self.kind} '{name}'{suggest(name, self._items)}; "
                f"choose from: {', '.join(sorted(self._items))}"
            )
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
