"""Changes to an OpenAPI 3.0 document that break the clients of its previous version.

`breaking_changes(old, new)` compares two parsed documents, following their local `$ref`s, and
returns one message per break, naming its place:
`PUT /users/{user_id} request body: username maxLength 64 → 32`.

Breaking, for a client written against `old`:
- a path, operation, parameter, response status, response content type or response header gone;
- a new required parameter or request body, or one that became required;
- in what the client sends (parameters and request bodies): a narrower constraint (`maxLength`,
  `maxItems`, `maxProperties` or `maximum` lowered or added; their `min` counterparts raised or
  added; an exclusive bound turned on; `pattern` or `format` changed or added; an `enum` value
  removed, or an `enum` added; `nullable` or `additionalProperties` turned off), a new required
  field, a field removed, a type changed;
- in what it receives (response bodies): a field removed or no longer required, a type changed,
  `nullable` turned on.

Everything else passes: new optional parameters and fields, new operations, statuses and
response fields, wider constraints, new values in a response, descriptions and examples.
Response bodies are not held to the request rules (a schema such as `Username` serves both,
and widening it must pass). `allOf`, `oneOf`, `anyOf` and `not` are compared as written: any
change to one is reported, for a person to judge.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Node = dict[str, Any]

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
UPPER_BOUNDS = ("maxLength", "maxItems", "maxProperties", "maximum")
LOWER_BOUNDS = ("minLength", "minItems", "minProperties", "minimum")
EXCLUSIVE_BOUNDS = ("exclusiveMinimum", "exclusiveMaximum")
COMPOSITIONS = ("allOf", "oneOf", "anyOf", "not")


def breaking_changes(old: Node, new: Node) -> list[str]:
    return list(_Comparison(old, new).paths())


def _resolve(document: Node, node: Node) -> Node:
    """The node a local `$ref` (`#/...`) points at, or the node itself."""
    followed: set[str] = set()
    while "$ref" in node:
        reference = node["$ref"]
        if not reference.startswith("#/") or reference in followed:
            raise ValueError(f"cannot follow $ref {reference}")
        followed.add(reference)
        target: Any = document
        for part in reference.removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def _shown(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, str) else str(value)


def _field(parent: str, name: str) -> str:
    return f"{parent}.{name}" if parent else name


class _Comparison:
    def __init__(self, old: Node, new: Node) -> None:
        self.old, self.new = old, new

    def paths(self) -> Iterator[str]:
        new_paths = self.new.get("paths", {})
        for path, old_item in self.old.get("paths", {}).items():
            if path not in new_paths:
                yield f"{path}: path removed"
                continue
            old_item = _resolve(self.old, old_item)
            new_item = _resolve(self.new, new_paths[path])
            for method in METHODS:
                where = f"{method.upper()} {path}"
                if method in old_item and method not in new_item:
                    yield f"{where}: operation removed"
                elif method in old_item:
                    yield from self.parameters(where, old_item, new_item, method)
                    yield from self.request_body(where, old_item[method], new_item[method])
                    yield from self.responses(where, old_item[method], new_item[method])

    def parameters(self, where: str, old_item: Node, new_item: Node, method: str) -> Iterator[str]:
        old = self.parameters_of(self.old, old_item, method)
        new = self.parameters_of(self.new, new_item, method)
        for key, parameter in old.items():
            kind = f"{parameter['in']} parameter {parameter['name']}"
            if key not in new:
                yield f"{where}: {kind} removed"
                continue
            if new[key].get("required") and not parameter.get("required"):
                yield f"{where} {kind}: now required"
            old_schema, new_schema = parameter.get("schema", {}), new[key].get("schema", {})
            yield from self.schema(f"{where} {kind}", "", old_schema, new_schema, sending=True)
        for key, parameter in new.items():
            if key not in old and parameter.get("required"):
                yield f"{where}: new required {parameter['in']} parameter {parameter['name']}"

    def parameters_of(self, document: Node, item: Node, method: str) -> dict[tuple[str, str], Node]:
        """The operation's parameters and its path's, by where they go and their name (a
        header's in lower case); the operation's own win."""
        found: dict[tuple[str, str], Node] = {}
        for node in [*item.get("parameters", []), *item[method].get("parameters", [])]:
            parameter = _resolve(document, node)
            name, location = parameter["name"], parameter["in"]
            found[location, name.lower() if location == "header" else name] = parameter
        return found

    def request_body(self, where: str, old_operation: Node, new_operation: Node) -> Iterator[str]:
        old = _resolve(self.old, old_operation.get("requestBody", {}))
        new = _resolve(self.new, new_operation.get("requestBody", {}))
        if new.get("required") and not old:
            yield f"{where}: new required request body"
        elif new.get("required") and not old.get("required"):
            yield f"{where}: request body now required"
        if old and not new:
            yield f"{where}: request body removed"
            return
        yield from self.content(f"{where} request body", old, new, sending=True)

    def responses(self, where: str, old_operation: Node, new_operation: Node) -> Iterator[str]:
        new_responses = new_operation.get("responses", {})
        for status, old_node in old_operation.get("responses", {}).items():
            if status not in new_responses:
                yield f"{where}: response {status} removed"
                continue
            place = f"{where} response {status}"
            old, new = _resolve(self.old, old_node), _resolve(self.new, new_responses[status])
            new_headers = {name.lower() for name in new.get("headers", {})}
            for name in old.get("headers", {}):
                if name.lower() not in new_headers:
                    yield f"{place}: header {name} removed"
            yield from self.content(place, old, new, sending=False)

    def content(self, place: str, old: Node, new: Node, *, sending: bool) -> Iterator[str]:
        """A request body's or a response's media types: each still there, its schema not
        narrowed for what a client sends (`sending`) nor shrunk for what it reads."""
        new_content = new.get("content", {})
        for media_type, content in old.get("content", {}).items():
            if media_type not in new_content:
                yield f"{place}: content type {media_type} removed"
                continue
            described = place if media_type == "application/json" else f"{place} {media_type}"
            old_schema = content.get("schema", {})
            new_schema = new_content[media_type].get("schema", {})
            yield from self.schema(described, "", old_schema, new_schema, sending=sending)

    def schema(
        self,
        where: str,
        field: str,
        old_node: Node,
        new_node: Node,
        *,
        sending: bool,
        comparing: frozenset[tuple[int, int]] = frozenset(),
    ) -> Iterator[str]:
        """What breaks between two schemas of what a client sends (`sending`) or receives.
        `field` is the dotted path to them from the body's root (`items[].username`)."""
        old, new = _resolve(self.old, old_node), _resolve(self.new, new_node)
        if (id(old), id(new)) in comparing:  # a recursive schema, already being compared
            return
        comparing |= {(id(old), id(new))}
        here = f"{where}: {field} " if field else f"{where}: "

        if old.get("type") != new.get("type") and (new if sending else old).get("type"):
            yield f"{here}type {_shown(old.get('type'))} → {_shown(new.get('type'))}"
            return
        for keyword in COMPOSITIONS:
            if old.get(keyword) != new.get(keyword):
                yield f"{here}{keyword} changed"
        if sending:
            yield from self.narrowed(here, old, new)
        elif new.get("nullable") and not old.get("nullable"):
            yield f"{here}nullable false → true"

        old_properties, new_properties = old.get("properties", {}), new.get("properties", {})
        old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
        for name, schema in old_properties.items():
            if name not in new_properties:
                yield f"{where}: field {_field(field, name)} removed"
                continue
            if not sending and name in old_required - new_required:
                yield f"{where}: field {_field(field, name)} no longer required"
            yield from self.schema(
                where,
                _field(field, name),
                schema,
                new_properties[name],
                sending=sending,
                comparing=comparing,
            )
        for name in sorted(new_required - old_required) if sending else []:
            if name in old_properties:
                yield f"{where}: field {_field(field, name)} now required"
            else:
                yield f"{where}: new required field {_field(field, name)}"
        if "items" in old and "items" in new:
            yield from self.schema(
                where,
                f"{field}[]",
                old["items"],
                new["items"],
                sending=sending,
                comparing=comparing,
            )

    def narrowed(self, here: str, old: Node, new: Node) -> Iterator[str]:
        """The constraints of a sent value that accept less than they did."""
        for keyword in UPPER_BOUNDS:
            if keyword in new and (keyword not in old or new[keyword] < old[keyword]):
                yield f"{here}{keyword} {_shown(old.get(keyword))} → {new[keyword]}"
        for keyword in LOWER_BOUNDS:
            if keyword in new and (keyword not in old or new[keyword] > old[keyword]):
                yield f"{here}{keyword} {_shown(old.get(keyword))} → {new[keyword]}"
        for keyword in EXCLUSIVE_BOUNDS:
            if new.get(keyword) and not old.get(keyword):
                yield f"{here}{keyword} false → true"
        for keyword in ("pattern", "format"):
            if keyword in new and new[keyword] != old.get(keyword):
                yield f"{here}{keyword} {_shown(old.get(keyword))} → {_shown(new[keyword])}"
        if "enum" in new and "enum" not in old:
            yield f"{here}enum added: {new['enum']}"
        for value in old.get("enum", []) if "enum" in new else []:
            if value not in new["enum"]:
                yield f"{here}enum value {_shown(value)} removed"
        if old.get("nullable") and not new.get("nullable"):
            yield f"{here}nullable true → false"
        closed = new.get("additionalProperties") is False
        if closed and old.get("additionalProperties") is not False:
            yield f"{here}additionalProperties → false"
