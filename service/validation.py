"""Connexion's validators, changed to answer every bad input with a 400 that lists each failure.

Stock Connexion reports only the first failing field, and a body that is not UTF-8 or is
nested too deeply escapes its parser as a 500.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Iterable, Iterator
from typing import Any, cast

from connexion.datastructures import MediaTypeDict
from connexion.json_schema import Draft4RequestValidator
from connexion.lifecycle import ConnexionRequest
from connexion.validators import JSONRequestBodyValidator
from connexion.validators import ParameterValidator as StockParameterValidator
from jsonschema import Draft4Validator, ValidationError
from starlette.types import Scope

from service.problems import invalid

FORMAT_CHECKER = Draft4Validator.FORMAT_CHECKER


def compiled(schema: dict[str, Any], kind: type[Draft4Validator]) -> Draft4Validator:
    """One validator per schema and kind, built on first use.

    Connexion builds a new validator for every request; the schemas are the spec's, fixed for
    the app's life. An entry keeps its schema alive, so its `id` cannot be reused.
    """
    key = (id(schema), kind)
    if key not in _COMPILED:
        _COMPILED[key] = (schema, kind(schema, format_checker=FORMAT_CHECKER))
    return _COMPILED[key][1]


_COMPILED: dict[tuple[int, type[Draft4Validator]], tuple[dict[str, Any], Draft4Validator]] = {}


class RequestBodyValidator(JSONRequestBodyValidator):
    @property
    def _validator(self) -> Draft4Validator:
        return compiled(self._schema, Draft4RequestValidator)

    async def _parse(self, stream: AsyncGenerator[bytes, None], scope: Scope) -> Any:
        """JSON is UTF-8 (RFC 8259, section 8.1), whatever charset the Content-Type names."""
        raw = b"".join([chunk async for chunk in stream])
        if not raw:
            return None
        try:
            body = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise invalid("The request body is not UTF-8 text.", []) from None
        except json.JSONDecodeError as error:
            raise invalid(f"The request body is not JSON: {error}.", []) from None
        except RecursionError:
            raise invalid("The request body is nested too deeply.", []) from None
        if b"\\u" in raw and _has_lone_surrogate(body):
            raise invalid("The request body holds a lone surrogate, which is not text.", [])
        return body

    def _validate(self, body: Any) -> None:
        if body is None:
            raise invalid("The request body is missing.", [])
        errors = _issues(self._validator.iter_errors(body))
        if errors:
            raise invalid("The request body is invalid.", errors)


class ParameterValidator(StockParameterValidator):
    @staticmethod
    def validate_parameter(
        parameter_type: str, value: Any, param: dict[str, Any], param_name: str | None = None
    ) -> str | None:
        """The failure's message alone: the stock one appends the whole schema."""
        if value is None:
            return f"{param['name']!r} is required." if param.get("required") else None
        try:
            compiled(param["schema"], Draft4Validator).validate(value)
        except ValidationError as error:
            return str(error.message)
        return None

    def validate_request(self, request: ConnexionRequest) -> None:
        checks = {
            "query": self.validate_query_parameter,
            "path": self.validate_path_parameter,
            "header": self.validate_header_parameter,
        }
        errors = [
            {"parameter": parameter["name"], "message": message}
            for location, check in checks.items()
            for parameter in self.parameters.get(location, [])
            if (message := check(parameter, request))
        ]
        if errors:
            raise invalid("A parameter is invalid.", errors)


VALIDATOR_MAP = {
    "parameter": ParameterValidator,
    "body": MediaTypeDict({"*/*json": RequestBodyValidator}),
}


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
