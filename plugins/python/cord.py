"""The CORD-like example in Python: the actuators for Site, Slice, Instance, Network and Port,
and the policy "every Network has at least one Port", as one component (world
`syncore:lang-http/cord-http-plugin`, see ../lang-wit-http/world.wit).

It does what the Rust plugins `plugins/cord-actuators` and `plugins/cord-policy` do, rule for
rule and message for message, so that a run gives byte-identical snapshots and traces
(tests/languages.rs). Two extra models exist only to check that the host contains hostile
Python code: syncing a `Trap` object raises an uncaught exception (componentize-py turns it
into a trap), syncing a `Loop` object never returns (the host's time limit stops it).

With the configuration value `inventory` set (a base URL such as `http://127.0.0.1:8080`,
whose origin the embedder must grant), networks, instances and ports are created, updated
and deleted in that inventory service (`inventory/` in the repository), as the Rust
actuator does: `sync` PUTs the object's declarative fields under its key, `delete` DELETEs
it (a 404 is success), and the service's `id` is reported as feedback. With
`inventory-auth` naming a granted secret, the secret is sent as a bearer token. Any status
other than 2xx fails the call (the object backs off and retries). Without `inventory`, every
id is derived from the key (FNV-1a). The HTTP and configuration helpers are in
`syncore_sdk.py`.
"""

import json
from typing import Any, List, Optional, Tuple

import syncore_sdk
from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import (
    Change,
    Change_Upsert,
    Field,
    ObjectView,
    Outcome,
    Outcome_Deferred,
    Outcome_Failed,
    Outcome_Ok,
    PolicyInput,
    Upsert,
    Value,
    Value_Boolean,
    Value_Bytes,
    Value_Float,
    Value_Integer,
    Value_Json,
    Value_Null,
    Value_Reference,
    Value_References,
    Value_Text,
)

MASK64 = 0xFFFF_FFFF_FFFF_FFFF


def fnv1a(text: str) -> int:
    """FNV-1a, 64 bits: a stable hash of a key (the same on every host and every run)."""
    hash = 0xCBF2_9CE4_8422_2325
    for byte in text.encode("utf-8"):
        hash ^= byte
        hash = (hash * 0x0000_0100_0000_01B3) & MASK64
    return hash


def backend_id(obj: ObjectView) -> str:
    """The backend id of an object: model prefix and eight hex digits of the key's hash."""
    return "%s-%08x" % (obj.model.lower(), fnv1a(obj.key) & 0xFFFF_FFFF)


def find(fields: List[Field], name: str) -> Optional[Value]:
    for field in fields:
        if field.name == name:
            return field.value
    return None


def as_str(value: Optional[Value]) -> Optional[str]:
    """The text of a `text`, `reference` or `json` value."""
    if isinstance(value, (Value_Text, Value_Reference, Value_Json)):
        return value.value
    return None


def dependency_feedback(obj: ObjectView, field: str, name: str) -> Optional[Value]:
    """The feedback field `name` of the dependency `field` points at, if it is synced."""
    key = as_str(find(obj.fields, field))
    if key is None:
        return None
    for dep in obj.dependencies:
        if dep.key == key:
            value = find(dep.feedback, name)
            if value is None or isinstance(value, Value_Null):
                return None
            return value
    return None


def trim_end_matches(text: str, suffix: str) -> str:
    while suffix and text.endswith(suffix):
        text = text[: -len(suffix)]
    return text


COLLECTIONS = {"Network": "networks", "Instance": "instances", "Port": "ports"}
"""The inventory collection of each model the inventory holds."""


def to_json(value: Value) -> Any:
    """A field value as JSON (what the Rust actuator sends for it)."""
    if isinstance(value, (Value_Boolean, Value_Integer, Value_Float, Value_Text, Value_Reference)):
        return value.value
    if isinstance(value, Value_Json):
        try:
            return json.loads(value.value)
        except ValueError:
            return None
    if isinstance(value, (Value_Bytes, Value_References)):
        return list(value.value)
    return None


def inventory() -> Optional[str]:
    """The inventory's base URL, if configured."""
    base = syncore_sdk.config_get("inventory")
    return None if base is None else trim_end_matches(base, "/")


def auth() -> List[Tuple[str, str]]:
    """The headers of every inventory request: with the configuration value `inventory-auth`
    naming a secret, that secret as a bearer token (a secret not granted fails the call)."""
    name = syncore_sdk.config_get("inventory-auth")
    token = None if name is None else syncore_sdk.secret(name)
    return [] if token is None else [("authorization", "Bearer " + token)]


def put(base: str, collection: str, obj: ObjectView) -> str:
    """PUTs the object's declarative fields; the service's id. Raises `HttpError`."""
    body = json.dumps({f.name: to_json(f.value) for f in obj.fields})
    url = "%s/v1/%s/%s" % (base, collection, obj.key)
    headers = [("content-type", "application/json")] + auth()
    reply = syncore_sdk.request("PUT", url, headers, body.encode("utf-8"))
    if not 200 <= reply.status < 300:
        raise syncore_sdk.status_error("PUT", url, reply)
    try:
        record = json.loads(reply.body)
    except ValueError as e:
        raise syncore_sdk.HttpError("PUT %s: the answer is not JSON: %s" % (url, e))
    id = record.get("id") if isinstance(record, dict) else None
    if not isinstance(id, str):
        raise syncore_sdk.HttpError("PUT %s: the answer has no id" % url)
    return id


def remove(base: str, collection: str, key: str) -> None:
    """DELETEs the object (a 404 means it is already gone). Raises `HttpError`."""
    url = "%s/v1/%s/%s" % (base, collection, key)
    reply = syncore_sdk.request("DELETE", url, auth())
    if not (200 <= reply.status < 300 or reply.status == 404):
        raise syncore_sdk.status_error("DELETE", url, reply)


def ok(**feedback: str) -> Outcome:
    return Outcome_Ok([Field(name, Value_Text(value)) for name, value in feedback.items()])


class Actuator(exports.Actuator):
    """The CORD actuators, one component for every model (it dispatches on the model name)."""

    def sync(self, object: ObjectView) -> Outcome:
        h = fnv1a(object.key)
        id = backend_id(object)
        model = object.model
        base, collection = inventory(), COLLECTIONS.get(model)
        if base is not None and collection is not None:
            if model == "Port" and dependency_feedback(object, "network", "cidr") is None:
                return Outcome_Deferred("the port's network has no cidr yet")
            try:
                id = put(base, collection, object)
            except syncore_sdk.HttpError as e:
                return Outcome_Failed(e.message)
        if model == "Site":
            if as_str(find(object.fields, "name")) is None:
                return Outcome_Failed("a site needs a name")
            return ok(id=id)
        if model == "Slice":
            if dependency_feedback(object, "site", "id") is None:
                return Outcome_Deferred("the slice's site has no id yet")
            return ok(id=id)
        if model == "Network":
            return ok(id=id, cidr="10.%d.%d.0/24" % ((h >> 8) & 0xFF, h & 0xFF))
        if model == "Instance":
            return ok(id=id, ip="172.16.%d.%d" % ((h >> 8) & 0xFF, 1 + h % 254))
        if model == "Port":
            cidr = as_str(dependency_feedback(object, "network", "cidr"))
            if cidr is None:
                return Outcome_Deferred("the port's network has no cidr yet")
            ip = "%s%d" % (trim_end_matches(cidr, "0/24"), 2 + h % 250)
            host.log(host.Level.DEBUG, "port %s gets %s" % (object.key, ip))
            return ok(id=id, ip=ip)
        if model == "Trap":
            # Hostile: an uncaught exception; the component traps.
            raise RuntimeError("the backend for %s is on fire" % object.key)
        if model == "Loop":
            # Hostile: never returns.
            counter = object.version
            while True:
                counter += 1
        return Outcome_Failed("cord-actuators does not know model %s" % model)

    def delete(self, object: ObjectView) -> Outcome:
        base, collection = inventory(), COLLECTIONS.get(object.model)
        if base is not None and collection is not None:
            try:
                remove(base, collection, object.key)
            except syncore_sdk.HttpError as e:
                return Outcome_Failed(e.message)
        host.log(host.Level.INFO, "deleted %s %s" % (object.model, object.key))
        return Outcome_Ok([])


class Policy(exports.Policy):
    """Every Network has at least one Port: creates `<network>-port` when none refers to it."""

    def on_change(self, input: PolicyInput) -> List[Change]:
        if input.deleted or any(r.model == "Port" for r in input.referrers):
            return []
        port = Upsert(
            key=input.key + "-port",
            model="Port",
            fields=[Field("network", Value_Reference(input.key))],
        )
        return [Change_Upsert(port)]
