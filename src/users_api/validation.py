"""Connexion's validators, changed to answer every bad input with a 400 that lists each failure.

Stock Connexion reports only the first failing field, lets a query parameter the operation
does not declare pass unseen, takes as an integer whatever Python's `int()` takes, and lets a
body that is not UTF-8, is nested too deeply or holds a number too long for Python escape its
parser as a 500.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any, cast

import jsonschema_rs
from connexion.json_schema import Draft4RequestValidator
from connexion.lifecycle import ConnexionRequest
from connexion.uri_parsing import OpenAPIURIParser
from connexion.validators import ParameterValidator as StockParameterValidator
from jsonschema import Draft4Validator, ValidationError

from users_api import connexion_adapter
from users_api.problems import invalid

FORMAT_CHECKER = Draft4Validator.FORMAT_CHECKER
OPENAPI_ONLY = {"nullable", "readOnly", "writeOnly", "$ref"}
"""Keywords that Connexion's validators read as OpenAPI does, not as JSON Schema's Draft 4; and
`$ref`, which Connexion leaves only where it could not inline the schema, to be looked at there."""


class SpecSchema:
    """One schema of the spec, compiled once: jsonschema-rs decides, jsonschema explains.

    jsonschema-rs checks the valid inputs that nearly every request carries many times faster,
    and matches `pattern` as JSON Schema says (ECMA 262): Python's `re` lets a trailing newline
    through a pattern that ends in `$`. A failure is worded by jsonschema, as Connexion words it;
    what only jsonschema-rs rejects, jsonschema-rs words. Schemas that use OpenAPI's own keywords
    are left to jsonschema alone.
    """

    def __init__(self, schema: dict[str, Any], kind: type[Draft4Validator]) -> None:
        self.explainer = kind(schema, format_checker=FORMAT_CHECKER)
        self.checker = (
            None
            # Connexion hands each schema over with the spec's `components` attached.
            if OPENAPI_ONLY & _keywords({**schema, "components": None})
            else jsonschema_rs.Draft4Validator(schema, validate_formats=True)
        )

    def issues(self, instance: Any) -> list[dict[str, str]]:
        """One `{pointer, message}` per failing field, sorted by pointer; none if valid."""
        if self.checker is not None and self.checker.is_valid(instance):
            return []
        issues = _issues(self.explainer.iter_errors(instance))
        if issues or self.checker is None:
            return issues
        return [
            {
                "pointer": _pointer([str(part) for part in error.instance_path]),
                "message": error.message,
            }
            for error in self.checker.iter_errors(instance)
        ]


class CompiledSchemas:
    """One app's schemas, each compiled on first use, for as long as the app lives. The spec's
    schemas are fixed for that long; an entry keeps its schema alive, so that its `id` cannot
    be reused."""

    def __init__(self) -> None:
        self._compiled: dict[tuple[int, type[Draft4Validator]], tuple[Any, SpecSchema]] = {}

    def __call__(self, schema: dict[str, Any], kind: type[Draft4Validator]) -> SpecSchema:
        key = (id(schema), kind)
        if key not in self._compiled:
            self._compiled[key] = (schema, SpecSchema(schema, kind))
        return self._compiled[key][1]


def validator_map() -> dict[str, Any]:
    """Connexion's `validator_map` for one app: its validators share that app's compiled
    schemas, which go when the app goes (Connexion makes a validator per request, from a class,
    so the cache is a class attribute of classes made for the app)."""
    schemas = CompiledSchemas()

    class AppParameterValidator(ParameterValidator):
        compiled = schemas

    class AppRequestBodyValidator(RequestBodyValidator):
        compiled = schemas

    return connexion_adapter.validator_map(AppParameterValidator, AppRequestBodyValidator)


class RequestBodyValidator(connexion_adapter.BodyValidator):
    compiled: CompiledSchemas

    def parse(self, raw: bytes) -> Any:
        """JSON is UTF-8 (RFC 8259, section 8.1), whatever charset the Content-Type names."""
        if not raw:
            return None
        try:
            body = _JSON.decode(raw.decode("utf-8"))
            if b"\\u" in raw and _has_lone_surrogate(body):
                raise invalid("The request body holds a lone surrogate, which is not text.", [])
        except UnicodeDecodeError:
            raise invalid("The request body is not UTF-8 text.", []) from None
        except _TooManyDigits as error:
            raise invalid(f"The request body holds {error}.", []) from None
        except json.JSONDecodeError as error:
            raise invalid(f"The request body is not JSON: {error}.", []) from None
        except RecursionError:
            raise invalid("The request body is nested too deeply.", []) from None
        return body

    def check(self, body: Any, schema: dict[str, Any]) -> None:
        if body is None:
            raise invalid("The request body is missing.", [])
        errors = self.compiled(schema, Draft4RequestValidator).issues(body)
        if errors:
            raise invalid("The request body is invalid.", errors)


class ParameterValidator(StockParameterValidator):
    compiled: CompiledSchemas

    def validate_parameter(  # type: ignore[override]  # a method: it reads `compiled`
        self, parameter_type: str, value: Any, param: dict[str, Any], param_name: str | None = None
    ) -> str | None:
        """The failure's message alone: the stock one appends the whole schema."""
        if value is None:
            return f"{param['name']!r} is required." if param.get("required") else None
        issues = self.compiled(param["schema"], Draft4Validator).issues(value)
        return "; ".join(issue["message"] for issue in issues) or None

    def validate_request(self, request: ConnexionRequest) -> None:
        checks = {
            "query": self.validate_query_parameter,
            "path": self.validate_path_parameter,
            "header": self.validate_header_parameter,
        }
        unknown = (
            self.validate_query_parameter_list(request, self.security_query_params)
            if self.strict_validation and request.scope["query_string"]
            else set()
        )
        errors = [
            {"parameter": name, "message": "This operation takes no such query parameter."}
            for name in sorted(unknown)
        ] + [
            {"parameter": parameter["name"], "message": message}
            for location, check in checks.items()
            for parameter in self.parameters.get(location, [])
            if (message := check(parameter, request))
        ]
        if errors:
            raise invalid("A parameter is invalid.", errors)


class StrictURIParser(OpenAPIURIParser):
    """Connexion's parser of query and path parameters, taking as an integer only what JSON
    Schema's integer is in ASCII digits: `int()` also takes ` 5`, `+5`, `5_0` (50), and
    Arabic-Indic or fullwidth digits. Anything else stays a string, for the validator to refuse.
    """

    def resolve_params(self, params: dict[str, Any], _in: str) -> dict[str, Any]:
        resolved: dict[str, Any] = super().resolve_params(params, _in)
        if _in != "query":  # a path's integers are the router's: ASCII digits, a sign allowed
            return resolved
        schemas = self.param_schemas
        for name, value in resolved.items():
            if isinstance(value, int) and schemas.get(name, {}).get("type") == "integer":
                raw = params[name][-1]
                if not _INTEGER.fullmatch(raw):
                    resolved[name] = raw
        return resolved


MAX_DIGITS = 1000
"""The most digits a number in a body may have: far beyond any the spec allows, and far below
the 4,300 past which Python refuses to convert a string to an integer at all."""
_INTEGER = re.compile(rf"-?[0-9]{{1,{MAX_DIGITS}}}")


class _TooManyDigits(ValueError):
    pass


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > MAX_DIGITS:
        raise _TooManyDigits(f"a number of more than {MAX_DIGITS} digits")
    return int(text)


_JSON = json.JSONDecoder(parse_int=_integer)


def _has_lone_surrogate(body: Any) -> bool:
    try:
        json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return True
    return False


def _issues(errors: Iterable[ValidationError]) -> list[dict[str, str]]:
    """One `{pointer, message}` per failing field, sorted by pointer."""
    issues = {(pointer, message) for error in errors for pointer, message in _located(error)}
    return [{"pointer": pointer, "message": message} for pointer, message in sorted(issues)]


def _located(error: ValidationError) -> Iterator[tuple[str, str]]:
    """Where an error is: `required` and `additionalProperties` name the member at fault."""
    path = [str(part) for part in error.absolute_path]
    instance, schema = error.instance, error.schema
    if error.validator == "required" and isinstance(instance, dict):
        for name in cast(list[str], error.validator_value):
            if name not in instance:
                yield _pointer([*path, name]), f"{name!r} is a required property"
    elif error.validator == "additionalProperties" and isinstance(schema, dict):
        for name in cast(dict[str, Any], instance):
            if name not in schema.get("properties", {}):
                yield _pointer([*path, name]), f"{name!r} is not an allowed property"
    else:
        yield _pointer(path), error.message


def _pointer(parts: list[str]) -> str:
    """An RFC 6901 JSON Pointer."""
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


def _keywords(schema: Any) -> set[str]:
    """Every key of every object in `schema`, however deep."""
    if isinstance(schema, dict):
        return set(schema).union(*map(_keywords, schema.values()))
    if isinstance(schema, list):
        return set().union(*map(_keywords, schema))
    return set()
