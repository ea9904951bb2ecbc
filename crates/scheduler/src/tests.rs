//! Unit tests: the query language (one table row per subject × operator, and one per error),
//! and placement scenarios (filters, reasons, strategies, accounting).

use crate::query::{self, QueryErrorKind};
use crate::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn instance() -> Instance {
    let attrs = [
        ("ecs.instance-type", Some("t2.micro")),
        ("ecs.availability-zone", Some("us-east-1a")),
        ("ecs.os-type", Some("linux")),
        ("stack", Some("prod")),
        ("cores", Some("8")),
        ("flag", None),
    ];
    Instance {
        id: "a".into(),
        ec2_instance_id: "i-abcd1234".into(),
        attributes: attrs
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.map(str::to_string)))
            .collect(),
        registered_at_ms: query::parse_time("2018-02-01T12:00:00Z").unwrap_or(0),
        agent_connected: true,
        agent_version: "1.23.0".into(),
        can_run_tasks: true,
        running_tasks_count: 1,
        remaining: Resources::default(),
        task_groups: [("database".to_string(), 1), ("service:web".to_string(), 2)]
            .into_iter()
            .collect(),
    }
}

/// Parses `expr`, evaluates it on [`instance`] and compares; then checks the printed form
/// parses back to the same tree.
fn check(expr: &str, want: bool) {
    let parsed = parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    assert_eq!(
        parsed.matches(&instance()),
        want,
        "{expr} (printed: {parsed})"
    );
    let printed = parsed.to_string();
    assert_eq!(parse(&printed).ok(), Some(parsed), "{expr} → {printed}");
}

#[test]
fn every_subject_and_operator() {
    let table: &[(&str, bool)] = &[
        // agentConnected: == != in !in =~ !~
        ("agentConnected == true", true),
        ("agentConnected == FALSE", false),
        ("agentConnected != false", true),
        ("agentConnected in [false, true]", true),
        ("agentConnected !in [true]", false),
        ("agentConnected =~ t.*", true),
        ("agentConnected !~ t.*", false),
        // agentVersion: == != > >= < <=
        ("agentVersion == 1.23.0", true),
        ("agentVersion == 1.23", true),
        ("agentVersion != 1.23.0", false),
        ("agentVersion > 1.9.0", true),
        ("agentVersion >= 1.23.0", true),
        ("agentVersion < 1.100", true),
        ("agentVersion <= 1.22.9", false),
        // attribute:<name>: every operator
        ("attribute:ecs.instance-type == t2.micro", true),
        ("attribute:ecs.instance-type != t2.micro", false),
        ("attribute:cores > 10", false),
        ("attribute:cores >= 8", true),
        ("attribute:cores < 10", true),
        ("attribute:cores <= 7.5", false),
        ("attribute:ecs.os-type exists", true),
        ("attribute:missing exists", false),
        ("attribute:flag exists", true),
        ("attribute:missing !exists", true),
        ("attribute:ecs.os-type not_exists", false),
        (
            "attribute:ecs.availability-zone in [us-east-1a, us-east-1b]",
            true,
        ),
        (
            "attribute:ecs.availability-zone !in [us-east-1a, us-east-1b]",
            false,
        ),
        ("attribute:ecs.instance-type =~ t2.*", true),
        ("attribute:ecs.instance-type =~ t2", false),
        ("attribute:ecs.instance-type !~ 'm5\\..*'", true),
        ("attribute:missing != x", true),
        ("attribute:flag == x", false),
        // ec2InstanceId: == != in !in =~ !~
        ("ec2InstanceId == i-abcd1234", true),
        ("ec2InstanceId != 'i-abcd1234'", false),
        ("ec2InstanceId in ['i-abcd1234', 'i-wxyx7890']", true),
        ("ec2InstanceId !in ['i-abcd1234']", false),
        ("ec2InstanceId =~ i-a.*", true),
        ("ec2InstanceId !~ i-a.*", false),
        // registeredAt: == != > >= < <=, every date form
        ("registeredAt < 2018-03-01T00:00:00Z", true),
        ("registeredAt > 2018-02-01", true),
        ("registeredAt == 2018-02-01T12:00:00", true),
        ("registeredAt == 2018-02-01T13:00:00+01:00", true),
        ("registeredAt != 2018-02-01T12:00:00Z", false),
        ("registeredAt >= 2018-02-01T12:00:00Z", true),
        ("registeredAt <= 2018-02-01T11:59:59Z", false),
        // runningTasksCount: == != > >= < <=
        ("runningTasksCount == 1", true),
        ("runningTasksCount != 1", false),
        ("runningTasksCount > 0", true),
        ("runningTasksCount >= 2", false),
        ("runningTasksCount < 2", true),
        ("runningTasksCount <= 0", false),
        // task:group: == != in !in =~ !~ (a set: "any task in the group")
        ("task:group == database", true),
        ("task:group == service:web", true),
        ("task:group != database", false),
        ("task:group in [cache, database]", true),
        ("task:group !in [cache]", true),
        ("task:group =~ service:.*", true),
        ("task:group !~ .*", false),
        // compounds, word forms, case of keywords and subjects, precedence
        ("not(task:group == database)", false),
        ("!(task:group == cache)", true),
        ("agentConnected == true and runningTasksCount == 1", true),
        ("agentConnected == true && runningTasksCount == 0", false),
        ("runningTasksCount == 0 or runningTasksCount == 1", true),
        (
            "runningTasksCount == 0 || agentConnected equals false",
            false,
        ),
        (
            "runningTasksCount == 0 or agentConnected == true and ec2InstanceId == x",
            false,
        ),
        (
            "(runningTasksCount == 0 or agentConnected == true) and ec2InstanceId != x",
            true,
        ),
        (
            "RUNNINGTASKSCOUNT GREATER_THAN 0 AND NOT attribute:stack == test",
            true,
        ),
        ("attribute:stack in [\"prod\"]", true),
        ("attribute:Stack exists", false),
        (
            "attribute:ecs.instance-type matches 't2\\.(micro|small)'",
            true,
        ),
    ];
    for (expr, want) in table {
        check(expr, *want);
    }
}

#[test]
fn errors_point_at_the_problem() {
    let table: &[(&str, usize, &str)] = &[
        (
            "",
            1,
            "expected a subject or '(', found the end of the expression",
        ),
        ("agentConnected", 15, "expected an operator, found the end"),
        ("nosuch == 1", 1, "unknown subject 'nosuch'"),
        (
            "runningTasksCount =~ 1",
            19,
            "operator '=~' is not valid for runningTasksCount",
        ),
        (
            "agentVersion in [1]",
            14,
            "operator 'in' is not valid for agentVersion",
        ),
        (
            "runningTasksCount == many",
            22,
            "'many' is not a valid value for runningTasksCount",
        ),
        (
            "registeredAt < 2018-13-01",
            16,
            "not a valid value for registeredAt",
        ),
        ("agentConnected == yes", 19, "expected true or false"),
        ("agentVersion > 1.x", 16, "expected a version"),
        (
            "ec2InstanceId in i-1",
            18,
            "expected '[' to start the argument list",
        ),
        ("ec2InstanceId in []", 19, "at least one value"),
        (
            "ec2InstanceId in [a b]",
            21,
            "expected ',' or ']', found 'b'",
        ),
        ("task:group == 'db", 15, "unterminated"),
        ("task:group = db", 12, "expected '==' or '=~'"),
        ("(task:group == db", 18, "expected ')'"),
        ("task:group == db)", 17, "expected 'and', 'or' or the end"),
        ("task:group == db and", 21, "expected a subject"),
        ("attribute:x =~ '('", 16, "invalid regular expression"),
        ("attribute:x & y", 13, "expected '&&' or '||'"),
        ("attribute:x !y", 13, "expected an operator"),
    ];
    for (expr, column, msg) in table {
        let err = match parse(expr) {
            Err(e) => e,
            Ok(e) => panic!("{expr} parsed as {e}"),
        };
        assert_eq!(err.column, *column, "{expr}: {err}");
        assert!(err.to_string().contains(msg), "{expr}: {err}");
    }
    let deep = format!(
        "{}agentConnected == true{}",
        "(".repeat(200),
        ")".repeat(200)
    );
    assert_eq!(
        parse(&deep).map_err(|e| e.kind),
        Err(QueryErrorKind::TooDeep)
    );
    let long = format!("ec2InstanceId == {}", "a".repeat(3000));
    assert_eq!(
        parse(&long).map_err(|e| e.kind),
        Err(QueryErrorKind::TooLong)
    );
}

#[test]
fn printer_is_canonical() {
    let cases = [
        ("agentconnected==TRUE", "agentConnected == TRUE"),
        (
            "attribute:x == 1 or (attribute:y == 2 or attribute:z == 3)",
            "",
        ),
        (
            "(attribute:x == 1 or attribute:y == 2) and attribute:z == 3",
            "",
        ),
        (
            "ec2InstanceId in ['i-1','a b']",
            "ec2InstanceId in [i-1, 'a b']",
        ),
        (
            "!(task:group == database) && runningTasksCount < 3",
            "not(task:group == database) and runningTasksCount < 3",
        ),
        ("attribute:x =~ \"it's\"", "attribute:x =~ 'it\\'s'"),
        ("attribute:x not_exists", "attribute:x !exists"),
    ];
    for (input, want) in cases {
        let e = parse(input).unwrap_or_else(|err| panic!("{input}: {err}"));
        if !want.is_empty() {
            assert_eq!(e.to_string(), want);
        }
        assert_eq!(parse(&e.to_string()).ok(), Some(e));
    }
}

// ---------------------------------------------------------------------------------------------
// Placement

fn node(id: &str, cpu: i64, memory: i64) -> Instance {
    Instance {
        id: id.into(),
        ec2_instance_id: format!("i-{id}"),
        agent_connected: true,
        can_run_tasks: true,
        agent_version: "1.0.0".into(),
        remaining: Resources {
            cpu,
            memory,
            free_dynamic_ports: 100,
            ..Resources::default()
        },
        ..Instance::default()
    }
}

fn request(cpu: i64, memory: i64, count: u32) -> TaskRequest {
    TaskRequest {
        demand: Demand {
            cpu,
            memory,
            ..Demand::default()
        },
        group: "family:web".into(),
        count,
        ..TaskRequest::default()
    }
}

fn run(instances: &[Instance], req: &TaskRequest) -> (Vec<&'static str>, Vec<&'static str>) {
    let ids: Vec<&'static str> = ["a", "b", "c", "d", "e", "f"].to_vec();
    let plan = place(instances, req, &mut StdRng::seed_from_u64(7)).unwrap_or_default();
    (
        plan.placements.iter().map(|p| ids[p.instance]).collect(),
        plan.failures.iter().map(|f| f.reason.as_str()).collect(),
    )
}

#[test]
fn binpack_fills_the_fullest_instance_first_and_never_oversubscribes() {
    let fleet = [
        node("a", 4096, 4096),
        node("b", 4096, 1024),
        node("c", 4096, 2048),
    ];
    let mut req = request(100, 512, 9);
    req.strategies = vec![Strategy::Binpack(Resource::Memory)];
    let (placed, failed) = run(&fleet, &req);
    // b (1024) takes two, then c (2048) four… then a: 2 + 4 + 8 = 14 would fit, 9 asked.
    assert_eq!(placed, ["b", "b", "c", "c", "c", "c", "a", "a", "a"]);
    assert!(failed.is_empty());
    req.count = 20;
    let (placed, failed) = run(&fleet, &req);
    assert_eq!(placed.len(), 14);
    assert_eq!(failed, vec!["RESOURCE:MEMORY"; 6]);
    // binpack(cpu) reads the other resource.
    let fleet = [node("a", 1024, 4096), node("b", 512, 4096)];
    let mut req = request(256, 10, 3);
    req.strategies = vec![Strategy::Binpack(Resource::Cpu)];
    assert_eq!(run(&fleet, &req).0, ["b", "b", "a"]);
}

#[test]
fn spread_balances_by_instance_and_attribute_then_ties_go_on() {
    let mut fleet = vec![
        node("a", 4096, 4096),
        node("b", 4096, 4096),
        node("c", 4096, 4096),
    ];
    fleet[0].task_groups.insert("family:web".into(), 2);
    let mut req = request(1, 1, 4);
    req.strategies = vec![Strategy::Spread(SpreadField::InstanceId)];
    assert_eq!(run(&fleet, &req).0, ["b", "c", "b", "c"]);
    for (i, az) in ["1a", "1a", "1b"].iter().enumerate() {
        fleet[i]
            .attributes
            .insert("ecs.availability-zone".into(), Some((*az).into()));
    }
    fleet[0].task_groups.clear();
    fleet[1].remaining.memory = 100;
    req.strategies = vec![
        Strategy::Spread(SpreadField::Attribute("ecs.availability-zone".into())),
        Strategy::Binpack(Resource::Memory),
    ];
    // 1a, 1b alternate; within 1a binpack picks b (less memory).
    assert_eq!(run(&fleet, &req).0, ["b", "c", "b", "c"]);
}

#[test]
fn random_is_seeded_and_respects_filters() {
    let fleet: Vec<Instance> = (0..6).map(|i| node(&i.to_string(), 1024, 1024)).collect();
    let mut req = request(1, 1, 50);
    req.strategies = vec![Strategy::Random];
    let a = place(&fleet, &req, &mut StdRng::seed_from_u64(1)).unwrap_or_default();
    let b = place(&fleet, &req, &mut StdRng::seed_from_u64(1)).unwrap_or_default();
    assert_eq!(a, b);
    let used: std::collections::BTreeSet<usize> = a.placements.iter().map(|p| p.instance).collect();
    assert!(used.len() > 3, "random spreads over {used:?}");
}

#[test]
fn constraints_and_failure_reasons() {
    let mut fleet = vec![
        node("a", 4096, 4096),
        node("b", 4096, 4096),
        node("c", 4096, 4096),
    ];
    fleet[0]
        .attributes
        .insert("stack".into(), Some("prod".into()));
    fleet[1]
        .attributes
        .insert("stack".into(), Some("prod".into()));
    let mut req = request(1, 1, 3);
    req.constraints = vec![
        Constraint::DistinctInstance,
        Constraint::from_wire("memberOf", Some("attribute:stack == prod"))
            .unwrap_or(Constraint::DistinctInstance),
    ];
    let (placed, failed) = run(&fleet, &req);
    assert_eq!(placed, ["a", "b"]);
    assert_eq!(failed, ["ATTRIBUTE"]);

    // The reason is the latest filter reached: a disconnected, b lacks CPU, c lacks memory.
    let mut fleet = vec![
        node("a", 4096, 4096),
        node("b", 10, 4096),
        node("c", 4096, 10),
    ];
    fleet[0].agent_connected = false;
    assert_eq!(run(&fleet, &request(100, 100, 1)).1, ["RESOURCE:MEMORY"]);
    fleet[2].remaining.memory = 4096;
    fleet[2].remaining.tcp_ports = vec![80];
    let mut req = request(100, 100, 1);
    req.demand.tcp_ports = vec![80];
    assert_eq!(run(&fleet, &req).1, ["RESOURCE:PORTS"]);
    fleet[2].agent_connected = false;
    assert_eq!(run(&fleet, &req).1, ["RESOURCE:CPU"]);
    fleet[1].can_run_tasks = false;
    assert_eq!(run(&fleet, &req).1, ["AGENT"]);
    assert_eq!(
        place(&[], &req, &mut StdRng::seed_from_u64(0)),
        Err(PlacementError::NoInstances)
    );
}

#[test]
fn ports_static_and_dynamic_are_reserved_per_task() {
    let mut fleet = vec![node("a", 4096, 4096), node("b", 4096, 4096)];
    fleet[0].remaining.free_dynamic_ports = 3;
    let mut req = request(1, 1, 3);
    req.demand.tcp_ports = vec![8080];
    req.demand.udp_ports = vec![53];
    assert_eq!(run(&fleet, &req), (vec!["a", "b"], vec!["RESOURCE:PORTS"]));
    let mut req = request(1, 1, 4);
    req.demand.dynamic_ports = 2;
    req.strategies = vec![Strategy::Binpack(Resource::Memory)];
    // a has 3 free ephemeral ports: one task; b has 100.
    assert_eq!(run(&fleet, &req).0, ["a", "b", "b", "b"]);
    assert_eq!(
        misfit(
            &fleet[0].remaining,
            &Demand {
                tcp_ports: vec![1, 1],
                ..Demand::default()
            }
        ),
        Some(Reason::Ports)
    );
}

#[test]
fn dynamic_constraints_see_the_tasks_of_the_batch() {
    let fleet = vec![
        node("a", 4096, 4096),
        node("b", 4096, 4096),
        node("c", 4096, 4096),
    ];
    let mut req = request(1, 1, 4);
    req.constraints = vec![Constraint::MemberOf(
        parse("not(task:group == family:web)").unwrap_or_else(|e| panic!("{e}")),
    )];
    assert_eq!(run(&fleet, &req), (vec!["a", "b", "c"], vec!["ATTRIBUTE"]));
    req.constraints = vec![Constraint::MemberOf(
        parse("runningTasksCount < 2").unwrap_or_else(|e| panic!("{e}")),
    )];
    req.count = 7;
    req.strategies = vec![Strategy::Binpack(Resource::Memory)];
    assert_eq!(run(&fleet, &req).0, ["a", "a", "b", "b", "c", "c"]);
}

#[test]
fn wire_forms() {
    use Strategy as S;
    assert_eq!(
        Strategy::from_wire("binpack", Some("memory")),
        Ok(S::Binpack(Resource::Memory))
    );
    assert_eq!(
        Strategy::from_wire("spread", Some("host")),
        Ok(S::Spread(SpreadField::InstanceId))
    );
    assert_eq!(
        Strategy::from_wire("spread", Some("attribute:ecs.availability-zone")),
        Ok(S::Spread(SpreadField::Attribute(
            "ecs.availability-zone".into()
        )))
    );
    assert_eq!(Strategy::from_wire("random", None), Ok(S::Random));
    assert!(Strategy::from_wire("binpack", Some("disk")).is_err());
    assert!(Strategy::from_wire("spread", Some("attribute:")).is_err());
    assert!(Strategy::from_wire("pack", None).is_err());
    assert_eq!(
        Constraint::from_wire("distinctInstance", None),
        Ok(Constraint::DistinctInstance)
    );
    assert_eq!(
        Constraint::from_wire("distinctInstance", Some("x")),
        Err(PlacementError::UnexpectedExpression)
    );
    assert_eq!(
        Constraint::from_wire("memberOf", None),
        Err(PlacementError::MissingExpression)
    );
    let err = Constraint::from_wire("memberOf", Some("bogus == 1"))
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some(
            "Invalid cluster query expression at column 1: unknown subject 'bogus'; expected agentConnected, agentVersion, attribute:<name>, ec2InstanceId, registeredAt, runningTasksCount or task:group"
        )
    );
}

#[test]
fn misfits_give_each_instance_its_reason_after_the_plan() {
    let mut fleet = vec![
        node("a", 4096, 1024),
        node("b", 10, 4096),
        node("c", 4096, 4096),
        node("d", 4096, 4096),
    ];
    fleet[2].agent_connected = false;
    fleet[3]
        .attributes
        .insert("stack".into(), Some("dev".into()));
    let mut req = request(100, 512, 3);
    req.constraints = vec![
        Constraint::from_wire("memberOf", Some("attribute:stack !exists"))
            .unwrap_or(Constraint::DistinctInstance),
    ];
    let plan = place(&fleet, &req, &mut StdRng::seed_from_u64(0)).unwrap_or_default();
    // a takes two tasks (1024 MiB), then nothing fits: the third task fails on memory.
    assert_eq!(plan.placements.len(), 2);
    assert_eq!(plan.failures.len(), 1);
    assert_eq!(
        misfits(&fleet, &req, &plan),
        vec![
            (0, Reason::Memory),
            (1, Reason::Cpu),
            (2, Reason::Agent),
            (3, Reason::Attribute)
        ]
    );
    // Before any placement, a still fits and is not listed.
    assert_eq!(
        misfits(&fleet, &req, &Plan::default()).first(),
        Some(&(1, Reason::Cpu))
    );
    assert_eq!(
        plan.failures[0].reason,
        misfits(&fleet, &req, &plan)
            .iter()
            .map(|(_, r)| *r)
            .max()
            .unwrap_or(Reason::Agent)
    );
}
