"""JSON schemas for bodies a route reads by hand, made fit to embed in the OpenAPI document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def standalone_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema with its ``$defs`` written in place.

    A schema embedded in an operation (``openapi_extra``) cannot point at its own
    ``#/$defs/…``: in the OpenAPI document that reference resolves nowhere, and
    clients (and the API fuzzing) cannot read the body's enums.
    """
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            reference = node.get("$ref")
            if isinstance(reference, str) and reference.startswith("#/$defs/"):
                return inline(definitions[reference.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    result: dict[str, Any] = inline(schema)
    return result
