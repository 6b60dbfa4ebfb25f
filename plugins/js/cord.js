// The CORD-like example in JavaScript: the actuators for Site, Slice, Instance, Network and
// Port, and the policy "every Network has at least one Port", as one component (world
// `syncore:lang/cord-plugin`, see ../lang-wit/world.wit).
//
// It does what the Rust plugins `plugins/cord-actuators` and `plugins/cord-policy` do, rule
// for rule and message for message, so that a run gives byte-identical snapshots and traces
// (tests/languages.rs). Two extra models exist only to check that the host contains hostile
// JavaScript: syncing a `Trap` object throws an uncaught error (the component traps),
// syncing a `Loop` object never returns (the host's time limit stops it).
//
// WIT values in JavaScript (jco's conventions): a variant is `{ tag, val }`, an enum is its
// case name as a string, `u64`/`s64` are BigInts, record fields are camelCase.

import { log } from "syncore:plugin/host@0.2.0";

const MASK64 = (1n << 64n) - 1n;
const encoder = new TextEncoder();

/** FNV-1a, 64 bits: a stable hash of a key (the same on every host and every run). */
function fnv1a(text) {
  let hash = 0xcbf29ce484222325n;
  for (const byte of encoder.encode(text)) {
    hash ^= BigInt(byte);
    hash = (hash * 0x00000100000001b3n) & MASK64;
  }
  return hash;
}

/** The backend id of an object: model prefix and eight hex digits of the key's hash. */
function backendId(object, hash) {
  const low = (hash & 0xffffffffn).toString(16).padStart(8, "0");
  return `${object.model.toLowerCase()}-${low}`;
}

/** A field's value by name, or undefined. */
function find(fields, name) {
  const field = fields.find((f) => f.name === name);
  return field === undefined ? undefined : field.value;
}

/** The text of a `text`, `reference` or `json` value. */
function asStr(value) {
  if (value !== undefined && ["text", "reference", "json"].includes(value.tag)) {
    return value.val;
  }
  return undefined;
}

/** The feedback field `name` of the dependency `field` points at, if it is synced. */
function dependencyFeedback(object, field, name) {
  const key = asStr(find(object.fields, field));
  if (key === undefined) return undefined;
  const dep = object.dependencies.find((d) => d.key === key);
  if (dep === undefined) return undefined;
  const value = find(dep.feedback, name);
  return value === undefined || value.tag === "null" ? undefined : value;
}

function trimEndMatches(text, suffix) {
  while (suffix.length > 0 && text.endsWith(suffix)) {
    text = text.slice(0, text.length - suffix.length);
  }
  return text;
}

/** `ok` with text feedback fields, in the order given. */
function ok(feedback) {
  return {
    tag: "ok",
    val: Object.entries(feedback).map(([name, val]) => ({ name, value: { tag: "text", val } })),
  };
}

const byte = (n) => Number(n & 0xffn);

/** The CORD actuators, one component for every model (it dispatches on the model name). */
export const actuator = {
  sync(object) {
    const hash = fnv1a(object.key);
    const id = backendId(object, hash);
    switch (object.model) {
      case "Site":
        if (asStr(find(object.fields, "name")) === undefined) {
          return { tag: "failed", val: "a site needs a name" };
        }
        return ok({ id });
      case "Slice":
        if (dependencyFeedback(object, "site", "id") === undefined) {
          return { tag: "deferred", val: "the slice's site has no id yet" };
        }
        return ok({ id });
      case "Network":
        return ok({ id, cidr: `10.${byte(hash >> 8n)}.${byte(hash)}.0/24` });
      case "Instance":
        return ok({ id, ip: `172.16.${byte(hash >> 8n)}.${1n + (hash % 254n)}` });
      case "Port": {
        const cidr = asStr(dependencyFeedback(object, "network", "cidr"));
        if (cidr === undefined) {
          return { tag: "deferred", val: "the port's network has no cidr yet" };
        }
        const ip = `${trimEndMatches(cidr, "0/24")}${2n + (hash % 250n)}`;
        log("debug", `port ${object.key} gets ${ip}`);
        return ok({ id, ip });
      }
      case "Trap":
        // Hostile: an uncaught error; the component traps.
        throw new Error(`the backend for ${object.key} is on fire`);
      case "Loop": {
        // Hostile: never returns.
        let counter = object.version;
        for (;;) {
          counter += 1n;
        }
      }
      default:
        return { tag: "failed", val: `cord-actuators does not know model ${object.model}` };
    }
  },

  delete(object) {
    log("info", `deleted ${object.model} ${object.key}`);
    return { tag: "ok", val: [] };
  },
};

/** Every Network has at least one Port: creates `<network>-port` when none refers to it. */
export const policy = {
  onChange(input) {
    if (input.deleted || input.referrers.some((r) => r.model === "Port")) {
      return [];
    }
    return [
      {
        tag: "upsert",
        val: {
          key: `${input.key}-port`,
          model: "Port",
          fields: [{ name: "network", value: { tag: "reference", val: input.key } }],
        },
      },
    ];
  },
};
