//! A CORD-like model (after XOS): sites, users, slices with controller extensions,
//! instances, networks and ports, with an external controller and passive templates.

use syncore::{
    Change, ChangeSet, Config, Engine, Outcome, Policy, PolicyInput, Schema, StateView, Task, Time,
    Value,
};

pub const CORD: &str = r#"{"models": [
  {"name": "Controller", "kind": "external", "fields": [{"name": "url", "type": "string"}]},
  {"name": "Site", "fields": [{"name": "name", "type": "string"}], "feedback": [{"name": "site_id", "type": "string"}]},
  {"name": "User", "fields": [{"name": "site", "type": "ref"}, {"name": "email", "type": "string"}],
   "links": [{"field": "site", "target": "Site"}]},
  {"name": "Slice", "fields": [{"name": "site", "type": "ref"}, {"name": "creator", "type": "ref"}, {"name": "max_instances", "type": "int"}],
   "feedback": [{"name": "tenant_id", "type": "string"}],
   "links": [{"field": "site", "target": "Site"}, {"field": "creator", "target": "User"}]},
  {"name": "ControllerSlice", "fields": [{"name": "slice", "type": "ref"}, {"name": "controller", "type": "ref"}],
   "links": [{"field": "slice", "target": "Slice", "proxy": true}, {"field": "controller", "target": "Controller"}]},
  {"name": "NetworkTemplate", "kind": "passive", "fields": [{"name": "kind", "type": "string"}]},
  {"name": "Network", "fields": [{"name": "owner", "type": "ref"}, {"name": "template", "type": "ref"}, {"name": "labels", "type": "json"}],
   "feedback": [{"name": "net_id", "type": "string"}],
   "links": [{"field": "owner", "target": "Slice"}, {"field": "template", "target": "NetworkTemplate"}]},
  {"name": "Instance", "fields": [{"name": "slice", "type": "ref"}, {"name": "image", "type": "string"}],
   "feedback": [{"name": "ip", "type": "string"}],
   "links": [{"field": "slice", "target": "Slice", "into": ["tenant_id"]}]},
  {"name": "Port", "fields": [{"name": "network", "type": "ref"}, {"name": "instance", "type": "ref"}],
   "links": [{"field": "network", "target": "Network"}, {"field": "instance", "target": "Instance"}]}
]}"#;

pub fn engine() -> Engine {
    Engine::new(Schema::from_json(CORD).unwrap(), Config::default())
}

/// A small deployment: one controller, one site, a user, two slices (one with a controller
/// extension), a template, two networks, instances and ports.
pub fn deployment() -> ChangeSet {
    ChangeSet::new()
        .upsert("ctl", "Controller", [("url", "https://ctl")])
        .upsert("site", "Site", [("name", "Princeton")])
        .upsert(
            "alice",
            "User",
            [("site", "site"), ("email", "alice@example.org")],
        )
        .upsert(
            "slice-a",
            "Slice",
            [
                ("site", Value::from("site")),
                ("creator", Value::from("alice")),
                ("max_instances", Value::Int(4)),
            ],
        )
        .upsert(
            "slice-b",
            "Slice",
            [
                ("site", Value::from("site")),
                ("creator", Value::from("alice")),
            ],
        )
        .upsert(
            "cs-a",
            "ControllerSlice",
            [("slice", "slice-a"), ("controller", "ctl")],
        )
        .upsert("private", "NetworkTemplate", [("kind", "private")])
        .upsert(
            "net-a",
            "Network",
            [("owner", "slice-a"), ("template", "private")],
        )
        .upsert(
            "net-b",
            "Network",
            [("owner", "slice-b"), ("template", "private")],
        )
        .upsert(
            "vm-a",
            "Instance",
            [("slice", "slice-a"), ("image", "ubuntu")],
        )
        .upsert(
            "vm-b",
            "Instance",
            [("slice", "slice-b"), ("image", "ubuntu")],
        )
        .upsert(
            "port-a",
            "Port",
            [("network", "net-a"), ("instance", "vm-a")],
        )
        .upsert(
            "port-b",
            "Port",
            [("network", "net-b"), ("instance", "vm-b")],
        )
}

/// Completes every task of each plan Ok (reporting the controller synced) until converged;
/// returns the keys of each round's tasks.
pub fn converge(engine: &mut Engine, now: Time) -> Vec<Vec<String>> {
    let mut rounds = Vec::new();
    for _ in 0..50 {
        if let Some(o) = engine.object("ctl") {
            let _ = engine.report_external(
                "ctl",
                syncore::ExternalReport::Synced { version: o.version },
            );
        }
        let plan = engine.plan(now);
        if plan.tasks.is_empty() {
            break;
        }
        rounds.push(
            plan.tasks
                .iter()
                .map(|t| engine.key(t.object).to_string())
                .collect(),
        );
        let tasks: Vec<Task> = plan.tasks.clone();
        for t in &tasks {
            let key = engine.key(t.object).to_string();
            engine
                .complete(t, Outcome::ok_with(feedback_for(engine, t, &key)), now)
                .unwrap();
        }
    }
    rounds
}

fn feedback_for(engine: &Engine, t: &Task, key: &str) -> Vec<(String, Value)> {
    let model = engine.view(t.object).model().to_string();
    let name = match model.as_str() {
        "Site" => "site_id",
        "Slice" => "tenant_id",
        "Network" => "net_id",
        "Instance" => "ip",
        _ => return vec![],
    };
    vec![(name.to_string(), Value::from(format!("{name}-{key}")))]
}

/// "Every Network has at least one Port" (R10).
pub struct NetworkHasPort;
impl Policy for NetworkHasPort {
    fn on_change(&self, n: &PolicyInput<'_>, state: &dyn StateView) -> Result<Vec<Change>, String> {
        if n.deleted || !state.referrers(n.key).is_empty() {
            return Ok(vec![]);
        }
        Ok(vec![Change::upsert(
            format!("{}-port", n.key),
            "Port",
            [("network", n.key)],
        )])
    }
}

#[test]
fn cord_deployment_converges_in_dependency_order() {
    let mut e = engine();
    e.apply(deployment()).unwrap();
    let plan = e.plan(Time(0));
    // The controller is external: the controller slice waits for its report.
    let cs = e.id("cs-a").unwrap();
    assert_eq!(
        e.status_in(&plan, cs),
        syncore::Status::WaitingExternal { key: "ctl".into() }
    );
    let rounds = converge(&mut e, Time(0));
    assert_eq!(
        rounds.len(),
        1,
        "everything runs in one plan once the controller reported"
    );
    assert!(e.plan(Time(0)).is_empty());
    assert_eq!(
        e.object("vm-a").unwrap().feedback[0].1,
        Value::from("ip-vm-a")
    );
}

#[test]
fn cord_policy_creates_ports_for_networks() {
    let mut e = engine();
    e.register_policy("Network", Box::new(NetworkHasPort))
        .unwrap();
    e.apply(deployment()).unwrap();
    let report = e
        .apply(ChangeSet::new().upsert("net-c", "Network", [("owner", "slice-b")]))
        .unwrap();
    assert_eq!(
        report.changed,
        vec!["net-c".to_string(), "net-c-port".to_string()]
    );
    assert_eq!(report.policy_rounds, 1);
    converge(&mut e, Time(0));
    assert!(e.plan(Time(0)).is_empty());
    assert!(e.object("net-c-port").is_some());
}

#[test]
fn cord_teardown_deletes_in_reverse_order_and_frees_templates() {
    let mut e = engine();
    e.apply(deployment()).unwrap();
    converge(&mut e, Time(0));
    let all: Vec<String> = e
        .keys()
        .filter(|k| *k != "ctl")
        .map(str::to_string)
        .collect();
    e.apply(ChangeSet {
        changes: all.iter().map(Change::delete).collect(),
    })
    .unwrap();
    let rounds = converge(&mut e, Time(0));
    assert_eq!(rounds.len(), 1);
    // Ports go before networks and instances; those before slices; slices before the site.
    let order = &rounds[0];
    let pos = |k: &str| order.iter().position(|x| x == k).unwrap();
    assert!(pos("port-a") < pos("net-a") && pos("port-a") < pos("vm-a"));
    assert!(pos("vm-a") < pos("cs-a") && pos("cs-a") < pos("slice-a"));
    assert!(pos("slice-a") < pos("alice") && pos("alice") < pos("site"));
    assert_eq!(
        e.keys().collect::<Vec<_>>(),
        vec!["ctl"],
        "the passive template left with its last referrer"
    );
}
