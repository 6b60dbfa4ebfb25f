// The CORD-like example in C: the actuators for Site, Slice, Instance, Network and Port, and
// the policy "every Network has at least one Port", as one component (world
// `syncore:lang/cord-plugin`, see ../lang-wit/world.wit; bindings by `wit-bindgen c`).
//
// It does what the Rust plugins `plugins/cord-actuators` and `plugins/cord-policy` do, rule
// for rule and message for message, so that a run gives byte-identical snapshots and traces
// (tests/languages.rs). Two extra models exist only to check that the host contains hostile
// C code: syncing a `Trap` object writes a line to stderr and executes `unreachable`, syncing
// a `Loop` object never returns (the host's time limit stops it).
//
// Memory, as wit-bindgen's C bindings want it: an export owns its arguments (freed here
// before returning) and hands over its result, which must be malloc'd (the generated
// post-return function frees it after the host has copied it).

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cord_plugin.h"

typedef cord_plugin_string_t string_t;
typedef syncore_plugin_types_field_t field_t;
typedef syncore_plugin_types_value_t value_t;
typedef syncore_plugin_types_list_field_t fields_t;
typedef syncore_plugin_types_object_view_t object_view_t;
typedef syncore_plugin_types_outcome_t outcome_t;

// FNV-1a, 64 bits: a stable hash of a key (the same on every host and every run).
static uint64_t fnv1a(const string_t *text) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < text->len; i++) {
    hash ^= text->ptr[i];
    hash *= 0x00000100000001b3ULL;
  }
  return hash;
}

// Whether `s` holds exactly the text `lit`.
static int eq(const string_t *s, const char *lit) {
  size_t n = strlen(lit);
  return s->len == n && memcmp(s->ptr, lit, n) == 0;
}

// A new string from a printf format (malloc'd: results are freed by the bindings).
static string_t format(const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  int n = vsnprintf(NULL, 0, fmt, args);
  va_end(args);
  string_t s = {malloc((size_t)n + 1), (size_t)n};
  va_start(args, fmt);
  vsnprintf((char *)s.ptr, (size_t)n + 1, fmt, args);
  va_end(args);
  return s;
}

// A field's value by name, or NULL.
static const value_t *find(const fields_t *fields, const char *name) {
  for (size_t i = 0; i < fields->len; i++) {
    if (eq(&fields->ptr[i].name, name)) {
      return &fields->ptr[i].value;
    }
  }
  return NULL;
}

// The text of a `text`, `reference` or `json` value, or NULL.
static const string_t *as_str(const value_t *value) {
  if (value == NULL) {
    return NULL;
  }
  switch (value->tag) {
  case SYNCORE_PLUGIN_TYPES_VALUE_TEXT:
    return &value->val.text;
  case SYNCORE_PLUGIN_TYPES_VALUE_REFERENCE:
    return &value->val.reference;
  case SYNCORE_PLUGIN_TYPES_VALUE_JSON:
    return &value->val.json;
  default:
    return NULL;
  }
}

// The feedback field `name` of the dependency `field` points at, if it is synced.
static const value_t *dependency_feedback(const object_view_t *object, const char *field,
                                          const char *name) {
  const string_t *key = as_str(find(&object->fields, field));
  if (key == NULL) {
    return NULL;
  }
  for (size_t i = 0; i < object->dependencies.len; i++) {
    const syncore_plugin_types_dependency_t *dep = &object->dependencies.ptr[i];
    if (dep->key.len == key->len && memcmp(dep->key.ptr, key->ptr, key->len) == 0) {
      const value_t *value = find(&dep->feedback, name);
      if (value == NULL || value->tag == SYNCORE_PLUGIN_TYPES_VALUE_NULL) {
        return NULL;
      }
      return value;
    }
  }
  return NULL;
}

// `ok` with `n` text feedback fields: names and values alternate in `pairs`; the values are
// taken over (they were made by `format`).
static void ok(outcome_t *ret, size_t n, const char **names, string_t *values) {
  ret->tag = SYNCORE_PLUGIN_TYPES_OUTCOME_OK;
  ret->val.ok.len = n;
  ret->val.ok.ptr = n ? malloc(n * sizeof(field_t)) : NULL;
  for (size_t i = 0; i < n; i++) {
    cord_plugin_string_dup(&ret->val.ok.ptr[i].name, names[i]);
    ret->val.ok.ptr[i].value.tag = SYNCORE_PLUGIN_TYPES_VALUE_TEXT;
    ret->val.ok.ptr[i].value.val.text = values[i];
  }
}

static void failed(outcome_t *ret, string_t message) {
  ret->tag = SYNCORE_PLUGIN_TYPES_OUTCOME_FAILED;
  ret->val.failed = message;
}

static void deferred(outcome_t *ret, string_t message) {
  ret->tag = SYNCORE_PLUGIN_TYPES_OUTCOME_DEFERRED;
  ret->val.deferred = message;
}

static void log_line(syncore_plugin_host_level_t level, string_t message) {
  syncore_plugin_host_log(level, &message);
  cord_plugin_string_free(&message);
}

// Writes the CORD feedback (or failure) for `object` into `ret`.
static void sync(const object_view_t *object, outcome_t *ret) {
  uint64_t hash = fnv1a(&object->key);
  int key_len = (int)object->key.len;
  const char *key = (const char *)object->key.ptr;
  // The backend id: the model in lower case (the models are ASCII), eight hex digits.
  string_t id = format("%.*s-%08" PRIx64, (int)object->model.len, (const char *)object->model.ptr,
                       hash & 0xffffffffULL);
  for (size_t i = 0; i < object->model.len; i++) {
    uint8_t c = id.ptr[i];
    if (c >= 'A' && c <= 'Z') {
      id.ptr[i] = (uint8_t)(c - 'A' + 'a');
    }
  }
  const string_t *model = &object->model;
  if (eq(model, "Site")) {
    if (as_str(find(&object->fields, "name")) == NULL) {
      cord_plugin_string_free(&id);
      failed(ret, format("a site needs a name"));
      return;
    }
    ok(ret, 1, (const char *[]){"id"}, (string_t[]){id});
  } else if (eq(model, "Slice")) {
    if (dependency_feedback(object, "site", "id") == NULL) {
      cord_plugin_string_free(&id);
      deferred(ret, format("the slice's site has no id yet"));
      return;
    }
    ok(ret, 1, (const char *[]){"id"}, (string_t[]){id});
  } else if (eq(model, "Network")) {
    string_t cidr = format("10.%" PRIu64 ".%" PRIu64 ".0/24", (hash >> 8) & 0xff, hash & 0xff);
    ok(ret, 2, (const char *[]){"id", "cidr"}, (string_t[]){id, cidr});
  } else if (eq(model, "Instance")) {
    string_t ip = format("172.16.%" PRIu64 ".%" PRIu64, (hash >> 8) & 0xff, 1 + hash % 254);
    ok(ret, 2, (const char *[]){"id", "ip"}, (string_t[]){id, ip});
  } else if (eq(model, "Port")) {
    const string_t *cidr = as_str(dependency_feedback(object, "network", "cidr"));
    if (cidr == NULL) {
      cord_plugin_string_free(&id);
      deferred(ret, format("the port's network has no cidr yet"));
      return;
    }
    // The prefix: the cidr without its trailing "0/24"s (Rust's `trim_end_matches`).
    size_t prefix = cidr->len;
    while (prefix >= 4 && memcmp(cidr->ptr + prefix - 4, "0/24", 4) == 0) {
      prefix -= 4;
    }
    string_t ip = format("%.*s%" PRIu64, (int)prefix, (const char *)cidr->ptr, 2 + hash % 250);
    log_line(SYNCORE_PLUGIN_HOST_LEVEL_DEBUG,
             format("port %.*s gets %.*s", key_len, key, (int)ip.len, (const char *)ip.ptr));
    ok(ret, 2, (const char *[]){"id", "ip"}, (string_t[]){id, ip});
  } else if (eq(model, "Trap")) {
    // Hostile: a diagnosis on stderr, then the `unreachable` instruction.
    fprintf(stderr, "the backend for %.*s is on fire\n", key_len, key);
    __builtin_trap();
  } else if (eq(model, "Loop")) {
    // Hostile: never returns.
    volatile uint64_t counter = object->version;
    for (;;) {
      counter = counter + 1;
    }
  } else {
    cord_plugin_string_free(&id);
    failed(ret, format("cord-actuators does not know model %.*s", (int)model->len,
                       (const char *)model->ptr));
  }
}

void exports_syncore_plugin_actuator_sync(exports_syncore_plugin_actuator_object_view_t *object,
                                          exports_syncore_plugin_actuator_outcome_t *ret) {
  sync(object, ret);
  exports_syncore_plugin_actuator_object_view_free(object);
}

void exports_syncore_plugin_actuator_delete(exports_syncore_plugin_actuator_object_view_t *object,
                                            exports_syncore_plugin_actuator_outcome_t *ret) {
  log_line(SYNCORE_PLUGIN_HOST_LEVEL_INFO,
           format("deleted %.*s %.*s", (int)object->model.len, (const char *)object->model.ptr,
                  (int)object->key.len, (const char *)object->key.ptr));
  ok(ret, 0, NULL, NULL);
  exports_syncore_plugin_actuator_object_view_free(object);
}

// Every Network has at least one Port: creates `<network>-port` when none refers to it.
bool exports_syncore_plugin_policy_on_change(exports_syncore_plugin_policy_policy_input_t *input,
                                             exports_syncore_plugin_policy_list_change_t *ret,
                                             cord_plugin_string_t *err) {
  (void)err;
  bool has_port = false;
  for (size_t i = 0; i < input->referrers.len; i++) {
    has_port = has_port || eq(&input->referrers.ptr[i].model, "Port");
  }
  ret->ptr = NULL;
  ret->len = 0;
  if (!input->deleted && !has_port) {
    syncore_plugin_types_change_t *change = malloc(sizeof *change);
    change->tag = SYNCORE_PLUGIN_TYPES_CHANGE_UPSERT;
    syncore_plugin_types_upsert_t *upsert = &change->val.upsert;
    upsert->key = format("%.*s-port", (int)input->key.len, (const char *)input->key.ptr);
    cord_plugin_string_dup(&upsert->model, "Port");
    upsert->fields.len = 1;
    upsert->fields.ptr = malloc(sizeof(field_t));
    cord_plugin_string_dup(&upsert->fields.ptr[0].name, "network");
    upsert->fields.ptr[0].value.tag = SYNCORE_PLUGIN_TYPES_VALUE_REFERENCE;
    upsert->fields.ptr[0].value.val.reference =
        format("%.*s", (int)input->key.len, (const char *)input->key.ptr);
    ret->ptr = change;
    ret->len = 1;
  }
  exports_syncore_plugin_policy_policy_input_free(input);
  return true;
}
