"""The CORD-like example in Python: the actuators for Site, Slice, Instance, Network and Port,
and the policy "every Network has at least one Port", as one component (world
`syncore:lang/cord-plugin`, see ../lang-wit/world.wit).

It does what the Rust plugins `plugins/cord-actuators` and `plugins/cord-policy` do, rule for
rule and message for message, so that a run gives byte-identical snapshots and traces
(tests/languages.rs). Two extra models exist only to check that the host contains hostile
Python code: syncing a `Trap` object raises an uncaught exception (componentize-py turns it
into a trap), syncing a `Loop` object never returns (the host's time limit stops it).
"""

from typing import List, Optional

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
    Value_Json,
    Value_Null,
    Value_Reference,
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


def ok(**feedback: str) -> Outcome:
    return Outcome_Ok([Field(name, Value_Text(value)) for name, value in feedback.items()])


class Actuator(exports.Actuator):
    """The CORD actuators, one component for every model (it dispatches on the model name)."""

    def sync(self, object: ObjectView) -> Outcome:
        h = fnv1a(object.key)
        id = backend_id(object)
        model = object.model
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
