"""How much one GraphQL request may ask for, checked before anything is read.

* **length**: a document of more than :data:`MAX_QUERY_LENGTH` characters, comments and
  blanks included, is not parsed (the request's schema refuses it first, with a 422): parsed
  and validated documents are cached by their text;
* **tokens**: a document of more than :data:`MAX_TOKENS` tokens is not parsed (the standard
  introspection query has fewer than 250);
* **selections**: at most :data:`MAX_SELECTIONS` selections (fields, fragment spreads, inline
  fragments) once every fragment is spread in place, counted by :func:`document_errors` before
  the document is validated: a fragment spread twice in a fragment spread twice... selects
  exponentially many fields from a few hundred bytes, and the validation rules (depth,
  aliases) walk a fragment again at each spread, so a long chain of spreads costs them as
  much as fields. The count reads each fragment once, so it is linear in the document;
* **overlaps**: at most :data:`MAX_OVERLAPS` pairs of fields answering under one name at one
  place (``{ a { x } a { x } }``: the two ``a`` and the two ``x``), fragments spread in place,
  counted by :func:`document_errors` too. The rule that fields of one name can be merged
  (``OverlappingFieldsCanBeMergedRule``) compares every such pair, and again under each pair of
  fields that contain them: 280 repeats of ``invoices { payments { id } }`` in 2,000 tokens
  took it a second;
* **aliases**: at most :data:`MAX_ALIASES` (``MaxAliasesLimiter``'s rule): aliases repeat a
  field;
* **depth**: at most :data:`MAX_DEPTH` levels of selection (``QueryDepthLimiter``'s rule;
  introspection fields are not counted: their depth is the schema's, which is small). The
  deepest path of the schema today is 6 (``orders.items.invoices.payments.transactions.id``,
  references upwards being ids): the limit holds once types point at each other;
* **cost**: at most :data:`MAX_COST` objects in the answer, counted before execution by
  :class:`QueryCost`: a page counts its ``first`` (given, or its variable's value or default,
  or the argument's default), every other list the estimate of :data:`LIST_SIZES`, each
  multiplied by what contains it (a fragment is counted once per page size it is spread at);
* **page size**: ``first`` is 1 to ``app.http.MAX_PAGE_SIZE`` (200), as REST's ``limit``;
* **text**: a string written in the document holds no character the database cannot store
  (:data:`app.fields.UNSTORABLE_TEXT`, as the request parser checks every string of a body,
  the variables included): :class:`StorableStrings`.

A refused request is a GraphQL error (HTTP 200) whose ``extensions.code`` names the limit.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLNamedType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    ValidationRule,
    VariableNode,
    get_named_type,
    get_nullable_type,
    is_list_type,
    value_from_ast_untyped,
)
from graphql.pyutils import Undefined
from strawberry.extensions import (
    AddValidationRules,
    ParserCache,
    SchemaExtension,
    max_aliases,
    query_depth_limiter,
)
from strawberry.schema.schema import validate_document

from app.fields import UNSTORABLE_TEXT, UNSTORABLE_TEXT_MESSAGE
from app.http import MAX_PAGE_SIZE
from modules.dashboard.services import MAX_DAYS

MAX_TOKENS = 2000
#: Characters: a document of :data:`MAX_TOKENS` tokens of usual names, laid out, takes less.
MAX_QUERY_LENGTH = 20_000
MAX_ALIASES = 15
MAX_DEPTH = 8
#: Objects one answer may hold at most: a full page of 200 orders with their lines, invoices
#: (with theirs), payments and transactions is about 9,000 by :data:`LIST_SIZES`.
MAX_COST = 10_000
#: Selections one document may make, fragments spread in place: a document of
#: :data:`MAX_TOKENS` tokens without fragments makes fewer than 2,000; the introspection query
#: about 300.
MAX_SELECTIONS = 5_000
#: Pairs of fields of one response name at one path: a document of colocated fragments that
#: each select ``id`` beside others makes a few dozen.
MAX_OVERLAPS = 1_000
#: What a nested list holds, as the cost counts it: a typical order, not the largest one.
LIST_SIZES: Mapping[tuple[str, str], int] = {
    ("Order", "lines"): 10,
    ("Invoice", "lines"): 10,
    ("Order", "invoices"): 2,
    ("Order", "payments"): 2,
    ("Invoice", "payments"): 2,
    ("Payment", "transactions"): 1,
    ("DashboardStats", "daily"): MAX_DAYS,  # a day each: the longest period
}
#: Any other list (a dashboard's providers, its statuses): counted as this many.
DEFAULT_LIST_SIZE = 10
PAGE_ARGUMENT = "first"


class StorableStrings(ValidationRule):
    """Refuses a string literal (an argument, an input object's field, a variable's default)
    that the database could not store: without it, a NUL sent to a text filter failed the
    whole request with the database's 422, instead of the query's own error."""

    def enter_string_value(self, node: StringValueNode, *_args: Any) -> None:
        if UNSTORABLE_TEXT.search(node.value):
            self.report_error(
                GraphQLError(
                    f"a string of the query {UNSTORABLE_TEXT_MESSAGE}",
                    node,
                    extensions={"code": "value-not-storable"},
                )
            )


#: The depth and alias rules (strawberry's QueryDepthLimiter and MaxAliasesLimiter), made once,
#: and ours: validated documents are cached by their rules too, so the rules must be the same
#: classes in every request (each limiter instance would make its own).
_RULES = (
    query_depth_limiter.create_validator(MAX_DEPTH, should_ignore=None),
    max_aliases.create_validator(MAX_ALIASES),
    StorableStrings,
)
#: Distinct documents whose parse and validation each process keeps (LRU): clients send the
#: same few documents with other variables.
CACHED_DOCUMENTS = 256


def limiters() -> list[Callable[[], SchemaExtension]]:
    """The schema extensions that hold a request to the limits above, and cache the parse and
    validation of documents already seen: factories, so each request has its own instances (an
    extension keeps the request's execution context)."""
    return [
        ParseLimits,
        functools.partial(AddValidationRules, list(_RULES)),
        functools.partial(ParserCache, maxsize=CACHED_DOCUMENTS),
        BoundedValidation,
        QueryCost,
    ]


class ParseLimits(SchemaExtension):
    """Parses no document longer than :data:`MAX_QUERY_LENGTH` characters or
    :data:`MAX_TOKENS` tokens (a GraphQL syntax error says which)."""

    def on_operation(self) -> Iterator[None]:
        self.execution_context.parse_options.update(
            max_tokens=MAX_TOKENS, max_source_length=MAX_QUERY_LENGTH
        )
        yield


class BoundedValidation(SchemaExtension):
    """Validates a document (as strawberry's ``ValidationCache``, whose place it takes) once
    :func:`document_errors` has found it within bounds: the rules never see a document that
    would take them exponential time, nor a spread of a fragment that is not there."""

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if context.graphql_document is not None:
            context.pre_execution_errors = _validated(
                context.schema._schema, context.graphql_document, context.validation_rules
            )
        yield


@functools.lru_cache(maxsize=CACHED_DOCUMENTS)
def _validated(
    schema: GraphQLSchema, document: DocumentNode, rules: tuple[Any, ...]
) -> list[GraphQLError]:
    return document_errors(document) or validate_document(schema, document, rules)


def document_errors(document: DocumentNode) -> list[GraphQLError]:
    """What makes ``document`` unfit to be validated: a spread of a fragment it does not
    define or a cycle of fragments (the rules would follow it, through every path of spreads),
    an empty selection set (the depth rule cannot measure it), or more than
    :data:`MAX_SELECTIONS` selections in its operations once their fragments are spread in
    place.
    Each definition is read once, and a fragment's count computed once and reused at each of
    its spreads."""
    operations: list[_Shape] = []
    fragments: dict[str, _Shape] = {}
    errors: list[GraphQLError] = []
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode | FragmentDefinitionNode):
            shape = _Shape.of(definition.selection_set)
            errors += shape.errors
            if isinstance(definition, FragmentDefinitionNode):
                fragments[definition.name.value] = shape
            else:
                operations.append(shape)
    for shape in (*operations, *fragments.values()):
        errors += [
            GraphQLError(f"Unknown fragment '{name}'.", spread)
            for name, spread in shape.spreads
            if name not in fragments
        ]
    if errors:
        return errors
    sizes: dict[str, int] = {}
    counting: set[str] = set()
    cyclic: set[str] = set()

    def size(shape: _Shape) -> int:
        total = shape.selections
        for name, spread in shape.spreads:
            if name in counting:
                if name not in cyclic:
                    cyclic.add(name)
                    errors.append(
                        GraphQLError(f"Cannot spread fragment '{name}' within itself.", spread)
                    )
                continue
            if name not in sizes:
                counting.add(name)
                sizes[name] = size(fragments[name])
                counting.discard(name)
            total = min(total + sizes[name], MAX_SELECTIONS + 1)
        return total

    selected = sum(size(shape) for shape in operations)
    for shape in [shape for name, shape in fragments.items() if name not in sizes]:
        size(shape)  # fragments no operation spreads: their cycles, not their size
    if errors:
        return errors
    if selected > MAX_SELECTIONS:
        return [
            GraphQLError(
                f"the document makes more than {MAX_SELECTIONS} selections once its "
                "fragments are spread in place: spread fewer fragments, or ask in several "
                "requests",
                extensions={"code": "query-too-complex", "max_selections": MAX_SELECTIONS},
            )
        ]
    overlaps = _overlaps(document)
    if overlaps > MAX_OVERLAPS:
        return [
            GraphQLError(
                f"the document selects the same fields at the same places too often: {overlaps} "
                "pairs of fields answer under one name at one path (fragments spread in "
                f"place), more than the {MAX_OVERLAPS} allowed: select each field once",
                extensions={"code": "query-too-complex", "max_overlaps": MAX_OVERLAPS},
            )
        ]
    return []


def _overlaps(document: DocumentNode) -> int:
    """Pairs of fields that answer under the same name at the same path of an operation,
    fragments and inline fragments spread in place (each fragment once per selection set, as
    the rule compares it). Only called on a document whose fragments make no cycle and, spread
    in place, at most :data:`MAX_SELECTIONS` selections: the walk is bounded by that."""
    fragments = {
        d.name.value: d.selection_set
        for d in document.definitions
        if isinstance(d, FragmentDefinitionNode)
    }
    fields_at: dict[tuple[str, ...], int] = {}
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    # A path starts with its operation's place: operations are validated each on its own.
    pending = [(operation.selection_set, (str(n),)) for n, operation in enumerate(operations)]
    while pending:
        selection_set, path = pending.pop()
        spread: set[str] = set()
        level = [selection_set]
        while level:
            for selection in level.pop().selections:
                if isinstance(selection, FieldNode):
                    name = (selection.alias or selection.name).value
                    at = (*path, name)
                    fields_at[at] = fields_at.get(at, 0) + 1
                    if selection.selection_set is not None:
                        pending.append((selection.selection_set, at))
                elif isinstance(selection, InlineFragmentNode):
                    level.append(selection.selection_set)
                elif selection.name.value not in spread:
                    spread.add(selection.name.value)
                    level.append(fragments[selection.name.value])
    return sum(count * (count - 1) // 2 for count in fields_at.values())


class _Shape:
    """One operation's or fragment's own selections: how many it makes itself (nested ones
    included, a spread counting one), the fragments it spreads, in order, and its empty
    selection sets as errors."""

    def __init__(self) -> None:
        self.selections = 0
        self.spreads: list[tuple[str, FragmentSpreadNode]] = []
        self.errors: list[GraphQLError] = []

    @classmethod
    def of(cls, selection_set: SelectionSetNode) -> _Shape:
        shape = cls()
        pending = [selection_set]  # a stack, not recursion: nesting is as deep as the parser lets
        while pending:
            selections = pending.pop()
            if not selections.selections:
                shape.errors.append(
                    GraphQLError("a selection set is empty: select at least one field", selections)
                )
            shape.selections += len(selections.selections)
            for selection in selections.selections:
                if isinstance(selection, FragmentSpreadNode):
                    shape.spreads.append((selection.name.value, selection))
                elif selection.selection_set is not None:
                    pending.append(selection.selection_set)
        return shape


class QueryCost(SchemaExtension):
    """Refuses, once the document is valid and before it runs, an operation whose answer may
    hold more than :data:`MAX_COST` objects (see the module's docstring)."""

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None and context.result is None:
            cost = operation_cost(
                context.schema._schema,
                document.definitions,
                context.operation_name,
                context.variables or {},
            )
            if cost > MAX_COST:
                context.result = ExecutionResult(
                    data=None,
                    errors=[
                        GraphQLError(
                            f"the query may return {cost} objects, more than the {MAX_COST} "
                            "allowed: ask for smaller pages (first) or fewer nested lists",
                            extensions={
                                "code": "query-too-costly",
                                "cost": cost,
                                "max_cost": MAX_COST,
                            },
                        )
                    ],
                )
        yield


def operation_cost(
    schema: GraphQLSchema,
    definitions: Any,
    operation_name: str | None,
    variables: Mapping[str, Any],
) -> int:
    """The number of objects the answer of the operation that runs may hold: the one named,
    else the first (as strawberry chooses); 0 for none (execution reports that)."""
    fragments = {d.name.value: d for d in definitions if isinstance(d, FragmentDefinitionNode)}
    operations = [d for d in definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
    if not operations or schema.query_type is None:
        return 0
    operation = operations[0]
    # A variable the request leaves out takes the default its definition gives, if any.
    defaults = {
        definition.variable.name.value: value_from_ast_untyped(definition.default_value)
        for definition in operation.variable_definitions or ()
        if definition.default_value is not None
    }
    counter = _Counter(schema, fragments, {**defaults, **variables})
    return counter.cost(operation.selection_set, schema.query_type, 1, None)


class _Counter:
    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: Mapping[str, Any],
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables
        #: (fragment, page size) -> the objects under one object of its type: every spread of
        #: a fragment counts the same times its multiplier (costs grow linearly with it).
        self._fragment_costs: dict[tuple[str, int | None], int] = {}

    def cost(
        self,
        selections: SelectionSetNode | None,
        parent: GraphQLNamedType,
        multiplier: int,
        page_size: int | None,
    ) -> int:
        """Objects under ``selections`` of ``multiplier`` objects of type ``parent``; a page's
        lists (its ``items``) hold ``page_size`` each."""
        if selections is None:
            return 0
        total = 0
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                total += self._field(selection, parent, multiplier, page_size)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                own = self.schema.get_type(condition.name.value) if condition else parent
                total += self.cost(selection.selection_set, own or parent, multiplier, page_size)
            elif isinstance(selection, FragmentSpreadNode):
                unit = self._fragment_cost(selection.name.value, parent, page_size)
                total += multiplier * unit
        return total

    def _fragment_cost(self, name: str, parent: GraphQLNamedType, page_size: int | None) -> int:
        key = (name, page_size)
        if key not in self._fragment_costs:
            fragment = self.fragments.get(name)
            unit = 0
            if fragment is not None:
                own = self.schema.get_type(fragment.type_condition.name.value) or parent
                unit = self.cost(fragment.selection_set, own, 1, page_size)
            self._fragment_costs[key] = unit
        return self._fragment_costs[key]

    def _field(
        self, node: FieldNode, parent: GraphQLNamedType, multiplier: int, page_size: int | None
    ) -> int:
        name = node.name.value
        definition = getattr(parent, "fields", {}).get(name)
        if name.startswith("__") or definition is None:
            return 0  # introspection is bounded by the schema; unknown fields fail validation
        named = get_named_type(definition.type)
        if not hasattr(named, "fields"):
            return 0  # a scalar or an enum: part of its object
        if PAGE_ARGUMENT in definition.args:
            # A page: one object, whose items are counted by its ``first``.
            first = self._page_size(node, definition.args[PAGE_ARGUMENT])
            return multiplier + self.cost(node.selection_set, named, multiplier, first)
        size = 1
        if is_list_type(get_nullable_type(definition.type)):
            if page_size is not None:
                size = page_size
            else:
                size = LIST_SIZES.get((parent.name, name), DEFAULT_LIST_SIZE)
        count = multiplier * size
        return count + self.cost(node.selection_set, named, count, None)

    def _page_size(self, node: FieldNode, argument: Any) -> int:
        arguments = node.arguments or ()
        given = next((a.value for a in arguments if a.name.value == PAGE_ARGUMENT), None)
        value: Any = argument.default_value
        if isinstance(given, IntValueNode):
            value = int(given.value)
        elif isinstance(given, VariableNode):
            # Neither given nor defaulted: the argument is left out, its own default applies.
            value = self.variables.get(given.name.value, value)
        if value is Undefined or not isinstance(value, int) or isinstance(value, bool):
            return MAX_PAGE_SIZE  # not a page size: execution refuses it, count the most
        return max(value, 0)
