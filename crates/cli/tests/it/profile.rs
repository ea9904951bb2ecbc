//! The AWS CLI profile `berth` that `berth up` writes, and how SigV4 and open auth treat the
//! keys a client signs with, as the `aws` CLI and a raw HTTP client see it.

use crate::harness::{Berth, ECS, Keys, Opts};

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn the_profile_works_with_no_setup_and_survives_restarts_and_edits() {
    let berth = Berth::start(Opts::default());
    let creds_path = berth.aws_dir().join("credentials");
    let conf_path = berth.aws_dir().join("config");

    // First start: the key is created and the profile written.
    let out = berth.stdout().join("\n");
    assert!(
        out.contains(&format!(
            "created root access key {}",
            berth.keys.access_key_id
        )),
        "{out}"
    );
    assert!(out.contains("wrote AWS CLI profile 'berth'"), "{out}");
    // The secret is readable by its owner only.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(berth.data_dir().join("identity.json"))
            .expect("identity.json")
            .permissions(),
    );
    assert_eq!(mode & 0o077, 0, "identity.json mode {mode:o}");
    let creds = read(&creds_path);
    let conf = read(&conf_path);
    assert!(creds.contains("[berth]"), "{creds}");
    assert!(creds.contains(&berth.keys.access_key_id), "{creds}");
    assert!(creds.contains(&berth.keys.secret_access_key), "{creds}");
    assert!(conf.contains("[profile berth]"), "{conf}");
    assert!(
        conf.contains(&format!("endpoint_url = {}", berth.endpoint)),
        "{conf}"
    );
    assert!(conf.contains("region = us-east-1"), "{conf}");

    // `AWS_PROFILE=berth aws ecs list-clusters` with nothing else.
    berth.ecs_ok(
        "CreateCluster",
        &serde_json::json!({"clusterName": "via-profile"}),
    );
    let listed = berth.aws_profile(&["ecs", "list-clusters"]).json();
    // `berth up` created `default` at start.
    assert_eq!(
        listed["clusterArns"],
        serde_json::json!([
            format!(
                "arn:aws:ecs:us-east-1:{}:cluster/default",
                berth.keys.account_id
            ),
            format!(
                "arn:aws:ecs:us-east-1:{}:cluster/via-profile",
                berth.keys.account_id
            )
        ])
    );

    // A restart on the same address and data dir: same key, profile left byte for byte.
    let addr = berth.addr;
    let key = berth.keys.access_key_id.clone();
    let berth = berth.restart(Opts::default().listen(addr));
    assert_eq!(
        berth.keys.access_key_id, key,
        "the key must survive a restart"
    );
    let out = berth.stdout().join("\n");
    assert!(!out.contains("created root access key"), "{out}");
    assert!(out.contains("profile 'berth' is up to date"), "{out}");
    assert_eq!(read(&creds_path), creds);
    assert_eq!(read(&conf_path), conf);
    berth.aws_profile(&["ecs", "list-clusters"]).json();

    // A restart on another port: the profile is still berth's own, so it follows the endpoint.
    let berth = berth.restart(Opts::default());
    let out = berth.stdout().join("\n");
    assert!(out.contains("wrote AWS CLI profile 'berth'"), "{out}");
    let conf = read(&conf_path);
    assert!(
        conf.contains(&format!("endpoint_url = {}", berth.endpoint)),
        "{conf}"
    );
    assert_eq!(read(&creds_path), creds, "the same key is written again");
    berth.aws_profile(&["ecs", "list-clusters"]).json();

    // The user edits the profile (another region): berth leaves it alone on the next start.
    let edited = conf.replace("region = us-east-1", "region = eu-west-1");
    assert_ne!(edited, conf);
    std::fs::write(&conf_path, &edited).expect("edit the profile");
    let berth = berth.restart(Opts::default());
    let out = berth.stdout().join("\n");
    assert!(
        out.contains("profile 'berth' was changed by hand; leaving it as it is"),
        "{out}"
    );
    assert_eq!(
        read(&conf_path),
        edited,
        "an edited profile is never rewritten"
    );
    assert_eq!(read(&creds_path), creds);
}

#[test]
fn sigv4_rejects_a_wrong_secret_an_unknown_key_and_an_unsigned_request() {
    let berth = Berth::start(Opts::default());
    let ok = berth.aws_explicit(&berth.keys, &["ecs", "list-clusters"]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);

    let wrong_secret = Keys::other(
        &berth.keys.access_key_id,
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    );
    let out = berth.aws_explicit(&wrong_secret, &["ecs", "list-clusters"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("InvalidSignatureException")
            && out
                .stderr
                .contains("signature we calculated does not match"),
        "{}",
        out.stderr
    );

    let unknown = Keys::other(
        "AKIAUNKNOWNUNKNOWN12",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    );
    let out = berth.aws_explicit(&unknown, &["ecs", "list-clusters"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("UnrecognizedClientException")
            && out
                .stderr
                .contains("security token included in the request is invalid"),
        "{}",
        out.stderr
    );

    // What curl sends: no Authorization header at all.
    let target = format!("{ECS}.ListClusters");
    let r = berth.post(
        "/",
        &[
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", &target),
        ],
        b"{}",
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.error_code(), "MissingAuthenticationTokenException");
    assert!(r.header("x-amzn-requestid").is_some());
}

#[test]
fn open_auth_accepts_any_well_formed_signature_and_writes_no_profile() {
    let berth = Berth::start(Opts::open());
    let wrong = Keys::other(
        "AKIAWHOEVERWHOEVER12",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    );
    let created = berth.aws_explicit(&wrong, &["ecs", "create-cluster", "--cluster-name", "open"]);
    let cluster = created.json();
    assert_eq!(cluster["cluster"]["clusterName"], "open");
    // A profile with the root key is only written in sigv4 mode.
    assert!(!berth.aws_dir().join("credentials").exists());
    // An unsigned request goes through too.
    let target = format!("{ECS}.ListClusters");
    let r = berth.post("/", &[("x-amz-target", &target)], b"{}");
    assert_eq!(r.status, 200, "{}", r.text());
    // `open` and the `default` that `berth up` creates.
    assert_eq!(r.json()["clusterArns"].as_array().map(Vec::len), Some(2));
}
