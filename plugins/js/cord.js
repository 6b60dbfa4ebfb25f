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
// With the configuration value `inventory` set (a base URL such as `http://127.0.0.1:8080`,
// whose origin the embedder must grant), networks, instances and ports are created, updated
// and deleted in that inventory service (`inventory/` in the repository), as the Rust
// actuator does: `sync` PUTs the object's declarative fields under its key, `delete`
// DELETEs it (a 404 is success), and the service's `id` is reported as feedback. With
// `inventory-auth` naming a granted secret, the secret is sent as a bearer token. Any status
// other than 2xx fails the call (the object backs off and retries). Those calls return a
// promise (`fetch`), which componentize-js runs to completion; without `inventory` every id
// is derived from the key (FNV-1a) and the calls stay synchronous. The HTTP and
// configuration helpers are in `syncore.js`.
//
// WIT values in JavaScript (jco's conventions): a variant is `{ tag, val }`, an enum is its
// case name as a string, `u64`/`s64` are BigInts, record fields are camelCase.

import { log } from "syncore:plugin/host@0.2.0";
import { HttpError, configGet, request, secret, statusError } from "./syncore.js";

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

/** The inventory collection of each model the inventory holds. */
const COLLECTIONS = { Network: "networks", Instance: "instances", Port: "ports" };

/** A field value as JSON text (what the Rust actuator sends for it). */
function jsonText(value) {
  switch (value.tag) {
    case "boolean":
    case "float":
    case "text":
    case "reference":
    case "references":
      return JSON.stringify(value.val) ?? "null";
    case "integer":
      return value.val.toString();
    case "bytes":
      return JSON.stringify([...value.val]);
    case "json":
      try {
        return JSON.stringify(JSON.parse(value.val));
      } catch {
        return "null";
      }
    default:
      return "null";
  }
}

/** The inventory's base URL, if configured. */
function inventory() {
  const base = configGet("inventory");
  return base === undefined ? undefined : trimEndMatches(base, "/");
}

/**
 * The headers of every inventory request: with the configuration value `inventory-auth`
 * naming a secret, that secret as a bearer token (a secret not granted fails the call).
 */
function auth() {
  const name = configGet("inventory-auth");
  const token = name === undefined ? undefined : secret(name);
  return token === undefined ? [] : [["authorization", `Bearer ${token}`]];
}

/** PUTs the object's declarative fields; resolves to the service's id. */
async function put(base, collection, object) {
  const body = `{${object.fields.map((f) => `${JSON.stringify(f.name)}:${jsonText(f.value)}`).join(",")}}`;
  const url = `${base}/v1/${collection}/${object.key}`;
  const reply = await request("PUT", url, [["content-type", "application/json"], ...auth()], body);
  if (reply.status < 200 || reply.status >= 300) throw statusError("PUT", url, reply);
  let record;
  try {
    record = JSON.parse(reply.body);
  } catch (e) {
    throw new HttpError(`PUT ${url}: the answer is not JSON: ${e.message}`);
  }
  if (record === null || typeof record.id !== "string") {
    throw new HttpError(`PUT ${url}: the answer has no id`);
  }
  return record.id;
}

/** DELETEs the object (a 404 means it is already gone). */
async function remove(base, collection, key) {
  const url = `${base}/v1/${collection}/${key}`;
  const reply = await request("DELETE", url, auth());
  if (!((reply.status >= 200 && reply.status < 300) || reply.status === 404)) {
    throw statusError("DELETE", url, reply);
  }
}

/** A rejection as a failed outcome (an unexpected error is a trap, as without HTTP). */
function failedWith(e) {
  if (e instanceof HttpError) return { tag: "failed", val: e.message };
  throw e;
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
    const base = inventory();
    const collection = COLLECTIONS[object.model];
    if (base !== undefined && collection !== undefined) {
      if (object.model === "Port" && dependencyFeedback(object, "network", "cidr") === undefined) {
        return { tag: "deferred", val: "the port's network has no cidr yet" };
      }
      return put(base, collection, object).then((id) => outcome(object, id), failedWith);
    }
    return outcome(object, undefined);
  },

  delete(object) {
    const base = inventory();
    const collection = COLLECTIONS[object.model];
    if (base !== undefined && collection !== undefined) {
      return remove(base, collection, object.key).then(() => deleted(object), failedWith);
    }
    return deleted(object);
  },
};

/** A deletion's outcome once the backend is done. */
function deleted(object) {
  log("info", `deleted ${object.model} ${object.key}`);
  return { tag: "ok", val: [] };
}

/** The outcome of a sync, with the backend's id if there is one (else the key's). */
function outcome(object, backend) {
  const hash = fnv1a(object.key);
  const id = backend ?? backendId(object, hash);
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
}

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
