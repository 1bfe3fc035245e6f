"""The purposes and operations an application knows: the ledger's own plus its modules'.

Kept per application (``app.extensions``), filled by ``setup`` hooks in module load order, so
a module that is not loaded adds nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from flask import Flask, current_app

from app.errors import Invalid

from .chart import CORE_PURPOSES, Purpose
from .operations import CORE_OPERATIONS, Operation, Widening

KEY = "ledger.registry"


class InvalidOperation(Invalid):
    code = "invalid-operation"
    title = "The ledger operation is not valid"


@dataclass
class LedgerRegistry:
    purposes: dict[str, Purpose] = field(default_factory=dict)
    operations: dict[str, Operation] = field(default_factory=dict)
    #: (module, function) that posts a module's history from before the ledger, once.
    backfills: list[tuple[str, Callable[[], int]]] = field(default_factory=list)
    #: The posting's validation of a leg's purposes, by (operation, debit side, purpose,
    #: fallbacks, has a holder): it depends on nothing else, so it is done once (``add``
    #: empties it).
    rules: dict[tuple[str, bool, str, tuple[str, ...], bool], tuple[Purpose, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def add(
        self,
        purposes: Iterable[Purpose] = (),
        operations: Iterable[Operation] = (),
        widenings: Iterable[Widening] = (),
    ) -> None:
        for purpose in purposes:
            _put(self.purposes, purpose.code, purpose, "purpose")
        for operation in operations:
            self._check_purposes(operation.code, operation.debit | operation.credit)
            _put(self.operations, operation.code, operation, "operation")
        for widening in widenings:
            known = self.operations.get(widening.operation)
            if known is None:
                raise ValueError(f"widening unknown operation {widening.operation!r}")
            self._check_purposes(widening.operation, widening.debit | widening.credit)
            self.operations[known.code] = replace(
                known, debit=known.debit | widening.debit, credit=known.credit | widening.credit
            )
        self.rules.clear()

    def _check_purposes(self, operation: str, names: Iterable[str]) -> None:
        for name in names:
            if name not in self.purposes:
                raise ValueError(f"operation {operation}: unknown purpose {name!r}")

    def operation(self, code: str) -> Operation:
        try:
            return self.operations[code]
        except KeyError:
            raise InvalidOperation(
                f"{code!r} is not a ledger operation",
                errors={"operation": f"one of {', '.join(sorted(self.operations))}"},
            ) from None

    def purpose(self, code: str, field_name: str = "purpose") -> Purpose:
        try:
            return self.purposes[code]
        except KeyError:
            raise InvalidOperation(
                f"{code!r} is not an account purpose", errors={field_name: "unknown purpose"}
            ) from None


def _put(table: dict, code: str, value: object, what: str) -> None:  # type: ignore[type-arg]
    if table.get(code, value) != value:
        raise ValueError(f"two different ledger {what}s are called {code!r}")
    table[code] = value


def install(app: Flask, _settings: object) -> None:
    registry = LedgerRegistry()
    registry.add(CORE_PURPOSES, CORE_OPERATIONS)
    app.extensions[KEY] = registry


def registry() -> LedgerRegistry:
    return current_app.extensions[KEY]
