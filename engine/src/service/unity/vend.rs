//! Short-lived credentials to one table's files (`POST /temporary-table-credentials`), as
//! narrow as the store allows:
//!
//! - local disk: none (the location is all a client needs);
//! - S3: STS `AssumeRole` of `[serve.credentials] s3_role_arn` with a session policy that
//!   allows only the table's prefix (reads, or reads and writes), for `ttl`; or, only when
//!   `share_lake_keys = true`, the lake's own keys. A custom endpoint (MinIO, moto) is handed
//!   out as `access_point`, which delta-rs uses as the endpoint;
//! - Azure: a service SAS of the lake's container signed with the account key, read and list
//!   only (plus write and delete for `READ_WRITE`), valid for `ttl`.
//!
//! The lake's long-lived secret never leaves the server unless the config says so.

use std::time::Duration;

use chrono::Utc;
use serde::Serialize;

use super::super::{Result, ServiceError};
use crate::ErrorKind;
use crate::storage::Lake;
use crate::table::TableId;

/// What the credentials may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Read the table's files.
    Read,
    /// Read and write them (admins only).
    ReadWrite,
}

impl Operation {
    /// `READ` or `READ_WRITE`.
    ///
    /// # Errors
    /// Any other value.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "READ" => Ok(Operation::Read),
            "READ_WRITE" => Ok(Operation::ReadWrite),
            other => Err(ServiceError::invalid(format!(
                "`operation`: `{other}` is not READ or READ_WRITE"
            ))),
        }
    }
}

/// How credentials are made (`[serve.credentials]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendConfig {
    /// How long vended credentials last (`ttl`, default 1 h; STS allows 15 min to 12 h).
    pub ttl: Duration,
    /// The IAM role assumed for S3 credentials (`s3_role_arn`).
    pub s3_role_arn: Option<String>,
    /// The STS endpoint (`s3_sts_endpoint`; default: the lake's S3 endpoint when one is
    /// set, else AWS's).
    pub s3_sts_endpoint: Option<String>,
    /// Hand out the lake's own S3 keys when no role is set (`share_lake_keys`).
    pub share_lake_keys: bool,
}

impl Default for VendConfig {
    fn default() -> Self {
        VendConfig {
            ttl: Duration::from_secs(3600),
            s3_role_arn: None,
            s3_sts_endpoint: None,
            share_lake_keys: false,
        }
    }
}

/// `TemporaryCredentials`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Credentials {
    /// S3 keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_temp_credentials: Option<AwsCredentials>,
    /// An Azure SAS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub azure_user_delegation_sas: Option<AzureSas>,
    /// When they expire (epoch ms).
    pub expiration_time: i64,
    /// The location they are for.
    pub url: String,
}

/// `AwsCredentials`, with the endpoint as `access_point`.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct AwsCredentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret key.
    pub secret_access_key: String,
    /// Session token (STS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_token: Option<String>,
    /// The S3 endpoint when not AWS's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_point: Option<String>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("access_point", &self.access_point)
            .finish_non_exhaustive()
    }
}

/// `AzureUserDelegationSAS`.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct AzureSas {
    /// The SAS query string (no leading `?`).
    pub sas_token: String,
}

impl std::fmt::Debug for AzureSas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AzureSas(..)")
    }
}

fn refused(message: impl Into<String>) -> ServiceError {
    ServiceError::new(ErrorKind::Forbidden, message)
}

/// Credentials for `op` on table `id` of `lake`, for `user`.
///
/// # Errors
/// The store cannot make narrow credentials with this config, or STS failed.
pub(crate) async fn vend(
    lake: &Lake,
    id: &TableId,
    op: Operation,
    user: &str,
    config: &VendConfig,
) -> Result<Credentials> {
    let url = super::location(lake, id);
    let expires = Utc::now() + config.ttl;
    let mut out = Credentials {
        aws_temp_credentials: None,
        azure_user_delegation_sas: None,
        expiration_time: expires.timestamp_millis(),
        url,
    };
    let root = lake.root();
    match root.scheme() {
        "file" => {}
        "s3" | "s3a" => {
            let bucket = root.host_str().unwrap_or_default().to_string();
            let prefix = lake.table_path(id).to_string();
            let (creds, expiration) = s3(lake, &bucket, &prefix, op, user, config).await?;
            if let Some(e) = expiration {
                out.expiration_time = e;
            }
            out.aws_temp_credentials = Some(creds);
        }
        "az" | "azure" | "abfs" | "abfss" => {
            out.azure_user_delegation_sas = Some(azure(lake, op, expires)?);
        }
        other => {
            return Err(refused(format!(
                "this server vends no credentials for `{other}` lakes"
            )));
        }
    }
    Ok(out)
}

/// The option `key` of the lake.
fn option<'a>(lake: &'a Lake, key: &str) -> Option<&'a str> {
    lake.options()
        .as_map()
        .get(key)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// The session policy that allows `op` under `bucket/prefix/` only.
fn s3_policy(bucket: &str, prefix: &str, op: Operation) -> String {
    let mut actions = vec!["s3:GetObject"];
    if op == Operation::ReadWrite {
        actions.extend(["s3:PutObject", "s3:DeleteObject"]);
    }
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": actions,
                "Resource": [format!("arn:aws:s3:::{bucket}/{prefix}/*")],
            },
            {
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [format!("arn:aws:s3:::{bucket}")],
                "Condition": {"StringLike": {"s3:prefix": [prefix.to_string(), format!("{prefix}/*")]}},
            },
        ],
    })
    .to_string()
}

/// A role session name from a user name: `assay-<user>`, in STS's alphabet, at most 64.
fn session_name(user: &str) -> String {
    let clean: String = user
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@-_".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("assay-{clean}").chars().take(64).collect()
}

async fn s3(
    lake: &Lake,
    bucket: &str,
    prefix: &str,
    op: Operation,
    user: &str,
    config: &VendConfig,
) -> Result<(AwsCredentials, Option<i64>)> {
    let endpoint = option(lake, "aws_endpoint").map(str::to_string);
    let key = option(lake, "aws_access_key_id");
    let secret = option(lake, "aws_secret_access_key");
    let token = option(lake, "aws_session_token");
    let Some(role) = &config.s3_role_arn else {
        if !config.share_lake_keys {
            return Err(refused(
                "this server vends no S3 credentials: set `[serve.credentials] s3_role_arn` \
                 (STS credentials limited to the table), or `share_lake_keys = true` to hand \
                 out the lake's own keys",
            ));
        }
        let (Some(key), Some(secret)) = (key, secret) else {
            return Err(refused(
                "`share_lake_keys` needs the lake's keys in `[lake.s3]` or AWS_ACCESS_KEY_ID / \
                 AWS_SECRET_ACCESS_KEY",
            ));
        };
        return Ok((
            AwsCredentials {
                access_key_id: key.into(),
                secret_access_key: secret.into(),
                session_token: token.map(str::to_string),
                access_point: endpoint,
            },
            None,
        ));
    };
    let (Some(key), Some(secret)) = (key, secret) else {
        return Err(refused(
            "assuming `s3_role_arn` needs the lake's keys in `[lake.s3]` or AWS_ACCESS_KEY_ID / \
             AWS_SECRET_ACCESS_KEY",
        ));
    };
    let region = option(lake, "aws_region")
        .unwrap_or("us-east-1")
        .to_string();
    let lake_creds = aws_credential_types::Credentials::new(
        key,
        secret,
        token.map(str::to_string),
        None,
        "assay-lake",
    );
    let mut sts = aws_sdk_sts::Config::builder()
        .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
        .region(aws_sdk_sts::config::Region::new(region))
        .credentials_provider(lake_creds);
    if let Some(e) = config.s3_sts_endpoint.clone().or_else(|| endpoint.clone()) {
        sts = sts.endpoint_url(e);
    }
    let client = aws_sdk_sts::Client::from_conf(sts.build());
    let secs = i32::try_from(config.ttl.as_secs()).unwrap_or(43_200);
    let answer = client
        .assume_role()
        .role_arn(role)
        .role_session_name(session_name(user))
        .policy(s3_policy(bucket, prefix, op))
        .duration_seconds(secs)
        .send()
        .await
        .map_err(|e| {
            let detail = aws_sdk_sts::error::DisplayErrorContext(&e).to_string();
            ServiceError::unavailable(
                format!("STS refused to assume `{role}`: {}", first_line(&detail)),
                detail,
            )
        })?;
    let c = answer
        .credentials()
        .ok_or_else(|| ServiceError::internal("STS answered without credentials"))?;
    let expiration = c.expiration().to_millis().ok();
    Ok((
        AwsCredentials {
            access_key_id: c.access_key_id().to_string(),
            secret_access_key: c.secret_access_key().to_string(),
            session_token: Some(c.session_token().to_string()),
            access_point: endpoint,
        },
        expiration,
    ))
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// A service SAS for the lake's container.
fn azure(lake: &Lake, op: Operation, expires: chrono::DateTime<Utc>) -> Result<AzureSas> {
    use base64::Engine;
    let account = option(lake, "azure_storage_account_name");
    let key = option(lake, "azure_storage_account_key");
    let (Some(account), Some(key)) = (account, key) else {
        return Err(refused(
            "Azure credentials are signed with the account key: set `[lake.azure] access_key` \
             (or AZURE_STORAGE_ACCOUNT_KEY)",
        ));
    };
    let container = lake.root().host_str().unwrap_or_default();
    let key = base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|_| refused("the Azure account key is not base64"))?;
    let permissions = match op {
        Operation::Read => "rl",
        Operation::ReadWrite => "racwdl",
    };
    let fmt = |t: chrono::DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let start = fmt(Utc::now() - chrono::Duration::minutes(5));
    let expiry = fmt(expires);
    let version = "2022-11-02";
    // Plain HTTP only when the lake itself is reached over it (Azurite).
    let plain = ["azure_allow_http", "allow_http"]
        .iter()
        .any(|k| option(lake, k) == Some("true"))
        || option(lake, "azure_storage_endpoint").is_some_and(|e| e.starts_with("http://"));
    let protocol = if plain { "https,http" } else { "https" };
    // Service SAS string-to-sign (version 2020-12-06 and later).
    let to_sign = [
        permissions,
        &start,
        &expiry,
        &format!("/blob/{account}/{container}"),
        "",
        "",
        protocol,
        version,
        "c",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
    ]
    .join("\n");
    let signing = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key);
    let signature = base64::engine::general_purpose::STANDARD
        .encode(aws_lc_rs::hmac::sign(&signing, to_sign.as_bytes()).as_ref());
    let q = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    Ok(AzureSas {
        sas_token: format!(
            "sv={version}&spr={}&st={}&se={}&sr=c&sp={permissions}&sig={}",
            q(protocol),
            q(&start),
            q(&expiry),
            q(&signature)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_policy_allows_the_table_prefix_only() {
        let p: serde_json::Value =
            serde_json::from_str(&s3_policy("b", "lake/gold/x", Operation::Read)).unwrap();
        assert_eq!(
            p["Statement"][0]["Resource"][0],
            "arn:aws:s3:::b/lake/gold/x/*"
        );
        assert_eq!(
            p["Statement"][0]["Action"],
            serde_json::json!(["s3:GetObject"])
        );
        assert_eq!(
            p["Statement"][1]["Condition"]["StringLike"]["s3:prefix"][1],
            "lake/gold/x/*"
        );
        let rw: serde_json::Value =
            serde_json::from_str(&s3_policy("b", "p", Operation::ReadWrite)).unwrap();
        assert_eq!(rw["Statement"][0]["Action"][1], "s3:PutObject");
    }

    #[test]
    fn session_names_use_the_sts_alphabet() {
        assert_eq!(session_name("ana"), "assay-ana");
        assert_eq!(session_name("a b/c"), "assay-a-b-c");
        assert_eq!(session_name(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn operations_are_read_or_read_write() {
        assert_eq!(Operation::parse("READ").unwrap(), Operation::Read);
        assert_eq!(
            Operation::parse("READ_WRITE").unwrap(),
            Operation::ReadWrite
        );
        assert!(Operation::parse("read").is_err());
    }
}
