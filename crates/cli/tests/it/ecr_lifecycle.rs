//! ECR lifecycle policies through the aws CLI: a preview and an application expire exactly the
//! images AWS's evaluation rules expire, and bad policies change nothing.

use crate::ecr::{ecr, ecr_fails, empty_index, unique};
use crate::harness::{Berth, Opts};
use serde_json::{Value, json};

/// Rules of every kind: untagged by count, tag prefixes by count, tag patterns by age, and a
/// catch-all `any` rule that may only expire what no earlier rule selected.
fn policy() -> String {
    json!({"rules": [
        {"rulePriority": 1, "description": "one untagged image",
         "selection": {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1},
         "action": {"type": "expire"}},
        {"rulePriority": 2, "description": "two releases",
         "selection": {"tagStatus": "tagged", "tagPrefixList": ["release"], "countType": "imageCountMoreThan", "countNumber": 2},
         "action": {"type": "expire"}},
        {"rulePriority": 3, "description": "dev builds for a day",
         "selection": {"tagStatus": "tagged", "tagPatternList": ["dev-*"], "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1},
         "action": {"type": "expire"}},
        {"rulePriority": 4, "description": "three images in all",
         "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 3},
         "action": {"type": "expire"}}
    ]})
    .to_string()
}

/// Puts an image (tagged when `tag` is given); returns its digest.
fn put(berth: &Berth, repo: &str, note: &str, tag: Option<&str>) -> String {
    let manifest = empty_index(note);
    let mut args = vec![
        "put-image",
        "--repository-name",
        repo,
        "--image-manifest",
        &manifest,
    ];
    if let Some(t) = tag {
        args.extend(["--image-tag", t]);
    }
    ecr(berth, &args)["image"]["imageId"]["imageDigest"]
        .as_str()
        .expect("digest")
        .to_owned()
}

fn digests(list: &Value, key: &str) -> Vec<String> {
    let mut out: Vec<String> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i[key].as_str().map(str::to_owned))
        .collect();
    out.sort();
    out
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn lifecycle_preview_and_application_expire_exactly_what_aws_would() {
    let berth = Berth::start(Opts::default());
    let repo = unique("lifecycle/app");
    ecr(&berth, &["create-repository", "--repository-name", &repo]);
    ecr_fails(
        &berth,
        &["get-lifecycle-policy", "--repository-name", &repo],
        "LifecyclePolicyNotFoundException",
    );
    ecr_fails(
        &berth,
        &["start-lifecycle-policy-preview", "--repository-name", &repo],
        "LifecyclePolicyNotFoundException",
    );
    ecr_fails(
        &berth,
        &["get-lifecycle-policy-preview", "--repository-name", &repo],
        "LifecyclePolicyPreviewNotFoundException",
    );

    // Oldest first.
    let u1 = put(&berth, &repo, "u1", None);
    let r1 = put(&berth, &repo, "r1", Some("release-1"));
    let d1 = put(&berth, &repo, "d1", Some("dev-1"));
    let u2 = put(&berth, &repo, "u2", None);
    let r2 = put(&berth, &repo, "r2", Some("release-2"));
    let x1 = put(&berth, &repo, "x1", Some("other-1"));
    let r3 = put(&berth, &repo, "r3", Some("release-3"));
    let u3 = put(&berth, &repo, "u3", None);
    let x2 = put(&berth, &repo, "x2", Some("other-2"));
    // Rule 1 keeps u3 and expires u2, u1; rule 2 keeps release-3 and release-2 and expires
    // release-1; rule 3 keeps dev-1 (pushed today); rule 4 keeps the three newest (x2, u3,
    // r3) and of the others expires only x1, the one image no earlier rule selected.
    let expected = [(&u1, 1), (&r1, 2), (&u2, 1), (&x1, 4)];

    let text = policy();
    let started = ecr(
        &berth,
        &[
            "start-lifecycle-policy-preview",
            "--repository-name",
            &repo,
            "--lifecycle-policy-text",
            &text,
        ],
    );
    assert_eq!(started["lifecyclePolicyText"], text.as_str());
    assert!(
        ["IN_PROGRESS", "COMPLETE"].contains(&started["status"].as_str().unwrap_or_default()),
        "{started}"
    );
    let waited = berth.aws_profile(&[
        "ecr",
        "wait",
        "lifecycle-policy-preview-complete",
        "--repository-name",
        &repo,
    ]);
    assert_eq!(waited.code, 0, "{}", waited.stderr);
    let preview = ecr(
        &berth,
        &["get-lifecycle-policy-preview", "--repository-name", &repo],
    );
    assert_eq!(preview["status"], "COMPLETE");
    assert_eq!(preview["lifecyclePolicyText"], text.as_str());
    assert_eq!(preview["summary"]["expiringImageTotalCount"], 4);
    let results: Vec<(String, i64, String)> = preview["previewResults"]
        .as_array()
        .expect("previewResults")
        .iter()
        .map(|r| {
            assert_eq!(r["action"]["type"], "EXPIRE", "{r}");
            (
                r["imageDigest"].as_str().unwrap_or_default().to_owned(),
                r["appliedRulePriority"].as_i64().unwrap_or_default(),
                r["imageTags"].to_string(),
            )
        })
        .collect();
    assert_eq!(
        results,
        expected
            .iter()
            .map(|(d, p)| {
                let tags = if **d == r1 {
                    json!(["release-1"]).to_string()
                } else if **d == x1 {
                    json!(["other-1"]).to_string()
                } else {
                    "null".to_owned()
                };
                ((*d).clone(), *p, tags)
            })
            .collect::<Vec<_>>()
    );
    // Only tagged ones, and page by page.
    let tagged = ecr(
        &berth,
        &[
            "get-lifecycle-policy-preview",
            "--repository-name",
            &repo,
            "--filter",
            "tagStatus=TAGGED",
            "--page-size",
            "1",
        ],
    );
    assert_eq!(
        digests(&tagged["previewResults"], "imageDigest"),
        sorted(vec![r1.clone(), x1.clone()])
    );
    // A preview expires nothing.
    let images = ecr(&berth, &["describe-images", "--repository-name", &repo]);
    assert_eq!(images["imageDetails"].as_array().map(Vec::len), Some(9));

    // Bad policies are refused and change nothing.
    for bad in [
        json!({"rules": [{"rulePriority": 1, "selection": {"tagStatus": "tagged", "countType": "imageCountMoreThan", "countNumber": 1}, "action": {"type": "expire"}}]}),
        json!({"rules": [{"rulePriority": 1, "selection": {"tagStatus": "any", "countType": "sinceImagePushed", "countNumber": 1}, "action": {"type": "expire"}}], "padding": "xxxxxxxxxxxxxxxxxxxxxxxxx"}),
        json!({"rules": [
            {"rulePriority": 1, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1}, "action": {"type": "expire"}},
            {"rulePriority": 2, "selection": {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1}, "action": {"type": "expire"}}]}),
    ] {
        let stderr = ecr_fails(
            &berth,
            &[
                "put-lifecycle-policy",
                "--repository-name",
                &repo,
                "--lifecycle-policy-text",
                &bad.to_string(),
            ],
            "InvalidParameterException",
        );
        assert!(
            stderr.contains("Lifecycle policy validation failure"),
            "{stderr}"
        );
    }
    ecr_fails(
        &berth,
        &["get-lifecycle-policy", "--repository-name", &repo],
        "LifecyclePolicyNotFoundException",
    );
    ecr_fails(
        &berth,
        &[
            "put-lifecycle-policy",
            "--repository-name",
            "missing",
            "--lifecycle-policy-text",
            &text,
        ],
        "RepositoryNotFoundException",
    );
    let images = ecr(&berth, &["describe-images", "--repository-name", &repo]);
    assert_eq!(images["imageDetails"].as_array().map(Vec::len), Some(9));

    // Putting the policy applies it: exactly the previewed images go.
    let put_answer = ecr(
        &berth,
        &[
            "put-lifecycle-policy",
            "--repository-name",
            &repo,
            "--lifecycle-policy-text",
            &text,
        ],
    );
    assert_eq!(put_answer["lifecyclePolicyText"], text.as_str());
    let left = ecr(&berth, &["describe-images", "--repository-name", &repo]);
    assert_eq!(
        digests(&left["imageDetails"], "imageDigest"),
        sorted(vec![
            d1.clone(),
            r2.clone(),
            r3.clone(),
            u3.clone(),
            x2.clone()
        ])
    );
    let got = ecr(
        &berth,
        &["get-lifecycle-policy", "--repository-name", &repo],
    );
    assert_eq!(got["lifecyclePolicyText"], text.as_str());
    assert!(!got["lastEvaluatedAt"].is_null(), "{got}");

    // A newer untagged image: the next application expires u3, the previous newest.
    let u4 = put(&berth, &repo, "u4", None);
    ecr(
        &berth,
        &[
            "put-lifecycle-policy",
            "--repository-name",
            &repo,
            "--lifecycle-policy-text",
            &text,
        ],
    );
    let left = ecr(&berth, &["describe-images", "--repository-name", &repo]);
    let left = digests(&left["imageDetails"], "imageDigest");
    assert!(!left.contains(&u3) && left.contains(&u4), "{left:?}");

    let deleted = ecr(
        &berth,
        &["delete-lifecycle-policy", "--repository-name", &repo],
    );
    assert_eq!(deleted["lifecyclePolicyText"], text.as_str());
    ecr_fails(
        &berth,
        &["delete-lifecycle-policy", "--repository-name", &repo],
        "LifecyclePolicyNotFoundException",
    );
}
