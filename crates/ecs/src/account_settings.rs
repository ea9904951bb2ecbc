//! Account settings: PutAccountSetting, PutAccountSettingDefault, DeleteAccountSetting,
//! ListAccountSettings. A principal's own setting wins over the account default, which wins over
//! the value AWS ships.

use crate::Ecs;
use crate::common::{self, invalid};
use crate::records::{AccountSettingRecord, kinds};
use berth_aws::{AwsError, RequestContext};
use berth_shapes::ecs as wire;
use berth_store::{Expect, Op};

/// The principal `PutAccountSettingDefault` writes for.
const DEFAULT_PRINCIPAL: &str = "default";

/// Every setting name with the values it accepts and AWS's default.
const SETTINGS: &[(&str, &[&str], &str)] = &[
    ("serviceLongArnFormat", &["enabled", "disabled"], "enabled"),
    ("taskLongArnFormat", &["enabled", "disabled"], "enabled"),
    (
        "containerInstanceLongArnFormat",
        &["enabled", "disabled"],
        "enabled",
    ),
    ("awsvpcTrunking", &["enabled", "disabled"], "disabled"),
    (
        "containerInsights",
        &["enabled", "disabled", "enhanced"],
        "disabled",
    ),
    ("fargateFIPSMode", &["enabled", "disabled"], "disabled"),
    ("tagResourceAuthorization", &["on", "off"], "on"),
    ("fargateTaskRetirementWaitPeriod", &["0", "7", "14"], "7"),
    ("guardDutyActivate", &["on", "off"], "off"),
    (
        "defaultLogDriverMode",
        &["blocking", "non-blocking"],
        "non-blocking",
    ),
    ("fargateEventWindows", &["enabled", "disabled"], "disabled"),
];

fn spec(
    name: &str,
) -> Result<&'static (&'static str, &'static [&'static str], &'static str), AwsError> {
    SETTINGS
        .iter()
        .find(|(n, _, _)| *n == name)
        .ok_or_else(|| invalid(format!("Unknown account setting '{name}'.")))
}

fn root(ctx: &RequestContext) -> String {
    format!("arn:aws:iam::{}:root", ctx.account_id)
}

fn key(principal: &str, name: &str) -> String {
    format!("{principal}|{name}")
}

fn principal(ctx: &RequestContext, given: Option<String>) -> Result<String, AwsError> {
    let p = given.unwrap_or_else(|| root(ctx));
    if !p.starts_with("arn:aws:iam::") {
        return Err(invalid(format!(
            "The principalArn '{p}' is not a valid IAM user, role or root ARN."
        )));
    }
    Ok(p)
}

fn to_wire(r: &AccountSettingRecord, kind: &str) -> wire::Setting {
    wire::Setting {
        name: Some(r.name.clone()),
        value: Some(r.value.clone()),
        principal_arn: Some(r.principal_arn.clone()),
        r#type: Some(kind.into()),
    }
}

/// The value that applies to the account's root for `name`.
pub async fn effective(ecs: &Ecs, ctx: &RequestContext, name: &str) -> Result<String, AwsError> {
    Ok(resolve(ecs, ctx, &root(ctx), name).await?.value)
}

async fn resolve(
    ecs: &Ecs,
    ctx: &RequestContext,
    principal: &str,
    name: &str,
) -> Result<AccountSettingRecord, AwsError> {
    for p in [principal, DEFAULT_PRINCIPAL] {
        if let Some((r, _)) =
            common::get::<AccountSettingRecord>(ecs, ctx, kinds::ACCOUNT_SETTING, &key(p, name))
                .await?
        {
            return Ok(AccountSettingRecord {
                principal_arn: principal.to_string(),
                ..r
            });
        }
    }
    let (_, _, default) = spec(name)?;
    Ok(AccountSettingRecord {
        name: name.into(),
        value: (*default).into(),
        principal_arn: principal.into(),
    })
}

async fn put(
    ecs: &Ecs,
    ctx: &RequestContext,
    principal: &str,
    name: &str,
    value: &str,
) -> Result<AccountSettingRecord, AwsError> {
    let (_, allowed, _) = spec(name)?;
    if !allowed.contains(&value) {
        return Err(invalid(format!(
            "The value '{value}' is not valid for setting {name}. Valid values: {}.",
            allowed.join(", ")
        )));
    }
    let partition = ctx.partition();
    let record = AccountSettingRecord {
        name: name.into(),
        value: value.into(),
        principal_arn: principal.into(),
    };
    let value = serde_json::to_value(&record).map_err(AwsError::internal)?;
    common::transact(ecs, || async {
        Ok((
            vec![Op::put(
                kinds::ACCOUNT_SETTING,
                partition.clone(),
                key(principal, name),
                value.clone(),
                Expect::Any,
            )],
            (),
        ))
    })
    .await?;
    Ok(record)
}

pub async fn put_account_setting(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::PutAccountSettingRequest,
) -> Result<wire::PutAccountSettingResponse, AwsError> {
    let principal = principal(ctx, req.principal_arn)?;
    let r = put(
        ecs,
        ctx,
        &principal,
        req.name.as_deref().unwrap_or_default(),
        req.value.as_deref().unwrap_or_default(),
    )
    .await?;
    Ok(wire::PutAccountSettingResponse {
        setting: Some(to_wire(&r, "user")),
    })
}

pub async fn put_account_setting_default(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::PutAccountSettingDefaultRequest,
) -> Result<wire::PutAccountSettingDefaultResponse, AwsError> {
    let mut r = put(
        ecs,
        ctx,
        DEFAULT_PRINCIPAL,
        req.name.as_deref().unwrap_or_default(),
        req.value.as_deref().unwrap_or_default(),
    )
    .await?;
    r.principal_arn = root(ctx);
    Ok(wire::PutAccountSettingDefaultResponse {
        setting: Some(to_wire(&r, "user")),
    })
}

pub async fn delete_account_setting(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::DeleteAccountSettingRequest,
) -> Result<wire::DeleteAccountSettingResponse, AwsError> {
    let principal = principal(ctx, req.principal_arn)?;
    let name = req.name.unwrap_or_default();
    spec(&name)?;
    let partition = ctx.partition();
    let k = key(&principal, &name);
    let existing = common::transact(ecs, || async {
        match common::get::<AccountSettingRecord>(ecs, ctx, kinds::ACCOUNT_SETTING, &k).await? {
            Some((r, v)) => Ok((
                vec![Op::delete(
                    kinds::ACCOUNT_SETTING,
                    partition.clone(),
                    k.clone(),
                    Expect::Version(v),
                )],
                Some(r),
            )),
            None => Ok((vec![], None)),
        }
    })
    .await?;
    let r = existing.ok_or_else(|| {
        invalid(format!(
            "The account setting {name} is not set for {principal}."
        ))
    })?;
    Ok(wire::DeleteAccountSettingResponse {
        setting: Some(to_wire(&r, "user")),
    })
}

pub async fn list_account_settings(
    ecs: &Ecs,
    ctx: &RequestContext,
    req: wire::ListAccountSettingsRequest,
) -> Result<wire::ListAccountSettingsResponse, AwsError> {
    if req.value.is_some() && req.name.is_none() {
        return Err(invalid("The value parameter requires the name parameter."));
    }
    let principal = principal(ctx, req.principal_arn)?;
    let names: Vec<&str> = match req.name.as_deref() {
        Some(n) => vec![spec(n)?.0],
        None => SETTINGS.iter().map(|(n, _, _)| *n).collect(),
    };
    let mut items = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        let setting = if req.effective_settings.unwrap_or(false) {
            let r = resolve(ecs, ctx, &principal, name).await?;
            Some(to_wire(&r, "user"))
        } else {
            common::get::<AccountSettingRecord>(
                ecs,
                ctx,
                kinds::ACCOUNT_SETTING,
                &key(&principal, name),
            )
            .await?
            .map(|(r, _)| to_wire(&r, "user"))
        };
        if let Some(s) = setting.filter(|s| req.value.is_none() || s.value == req.value) {
            items.push((format!("{i:03}"), s));
        }
    }
    let (settings, next) = common::page(
        ecs,
        &common::binding(ctx, "ListAccountSettings"),
        items,
        req.max_results,
        req.next_token.as_deref(),
        10,
    )?;
    Ok(wire::ListAccountSettingsResponse {
        settings: Some(settings),
        next_token: next,
    })
}
