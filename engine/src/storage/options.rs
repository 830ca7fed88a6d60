//! How to reach a lake's store: the `[lake]` settings, merged with the standard
//! environment variables into one set of object_store options, and the store they build.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use url::Url;

use crate::identity::Secret;

/// How to reach the lake's store: the `[lake]` keys besides `root`.
///
/// Values left unset fall back to the standard environment variables (`AWS_*`,
/// `AZURE_STORAGE_*`), then to the store's defaults.
#[derive(Debug, Clone, Default)]
pub struct StorageSettings {
    /// S3 and S3-compatible stores.
    pub s3: S3Settings,
    /// Azure Blob Storage / ADLS Gen2.
    pub azure: AzureSettings,
    /// Per-request timeout (object_store `timeout`).
    pub timeout: Option<Duration>,
    /// Connection timeout.
    pub connect_timeout: Option<Duration>,
    /// Retries of a failed request (transient errors only).
    pub max_retries: Option<u32>,
    /// Give up retrying a request after this long.
    pub retry_timeout: Option<Duration>,
}

/// `[lake.s3]`.
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    /// Region, e.g. `eu-west-1`.
    pub region: Option<String>,
    /// Endpoint of an S3-compatible store (MinIO, moto, Ceph, R2), e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    /// Allow plain `http://` endpoints.
    pub allow_http: Option<bool>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key (never printed).
    pub secret_access_key: Option<Secret>,
    /// Session token for temporary credentials (never printed).
    pub session_token: Option<Secret>,
    /// Address buckets as `bucket.host` instead of `host/bucket`.
    pub virtual_hosted_style: Option<bool>,
}

/// `[lake.azure]`.
#[derive(Debug, Clone, Default)]
pub struct AzureSettings {
    /// Storage account name.
    pub account: Option<String>,
    /// Account key (never printed).
    pub access_key: Option<Secret>,
    /// SAS token, with or without the leading `?` (never printed).
    pub sas_token: Option<Secret>,
    /// Blob endpoint, e.g. `https://account.blob.core.windows.net` or a private endpoint.
    pub endpoint: Option<String>,
    /// Talk to the Azurite emulator (account `devstoreaccount1` and its well-known key unless
    /// given; endpoint `http://127.0.0.1:10000` unless `endpoint` or
    /// `AZURITE_BLOB_STORAGE_URL` says otherwise).
    pub use_emulator: Option<bool>,
    /// Allow plain `http://` endpoints.
    pub allow_http: Option<bool>,
}

/// Marks options that talk to Azurite, whose listing ignores `startFrom` (see
/// [`object_store_for`]).
const AZURITE_KEY: &str = "assay_azurite";

/// Azurite's fixed development account.
const EMULATOR_ACCOUNT: &str = "devstoreaccount1";
/// Azurite's published development key (not a secret: it is in Microsoft's documentation).
const EMULATOR_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

impl StorageSettings {
    /// The options handed to object_store and delta-rs: the environment's `AWS_*` and
    /// `AZURE_*` variables that name a store option, overridden by the project's settings.
    pub fn options(&self, env: &[(String, String)]) -> StorageOptions {
        let mut o = HashMap::new();
        for (k, v) in env {
            let key = k.to_ascii_lowercase();
            if (key.starts_with("aws_") || key.starts_with("azure_"))
                && let Some(canonical) = store_key(&key)
            {
                o.insert(canonical, v.clone());
            }
        }
        let env_var = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        fn set(o: &mut HashMap<String, String>, key: &str, value: Option<String>) {
            if let Some(v) = value {
                o.insert(store_key(key).unwrap_or_else(|| key.to_string()), v);
            }
        }
        let s3 = &self.s3;
        set(&mut o, "aws_region", s3.region.clone());
        set(&mut o, "aws_endpoint", s3.endpoint.clone());
        set(
            &mut o,
            "aws_allow_http",
            s3.allow_http.map(|b| b.to_string()),
        );
        set(&mut o, "aws_access_key_id", s3.access_key_id.clone());
        set(
            &mut o,
            "aws_secret_access_key",
            s3.secret_access_key
                .as_ref()
                .map(|s| s.expose().to_string()),
        );
        set(
            &mut o,
            "aws_session_token",
            s3.session_token.as_ref().map(|s| s.expose().to_string()),
        );
        set(
            &mut o,
            "aws_virtual_hosted_style_request",
            s3.virtual_hosted_style.map(|b| b.to_string()),
        );
        let az = &self.azure;
        set(&mut o, "azure_storage_account_name", az.account.clone());
        set(
            &mut o,
            "azure_storage_account_key",
            az.access_key.as_ref().map(|s| s.expose().to_string()),
        );
        set(
            &mut o,
            "azure_storage_sas_key",
            az.sas_token
                .as_ref()
                .map(|s| s.expose().trim_start_matches('?').to_string()),
        );
        set(&mut o, "azure_storage_endpoint", az.endpoint.clone());
        set(
            &mut o,
            "azure_allow_http",
            az.allow_http.map(|b| b.to_string()),
        );
        let emulator = az.use_emulator.unwrap_or_else(|| {
            o.get(&store_key("azure_storage_use_emulator").unwrap_or_default())
                .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
        });
        if emulator {
            // Azurite addresses blobs as `<endpoint>/<account>/<container>/<path>`; spelled out
            // as a plain endpoint so a non-default port needs no process-wide variable.
            let k = |name: &str| store_key(name).unwrap_or_else(|| name.to_string());
            o.remove(&k("azure_storage_use_emulator"));
            let account = o
                .entry(k("azure_storage_account_name"))
                .or_insert_with(|| EMULATOR_ACCOUNT.into())
                .clone();
            if !o.contains_key(&k("azure_storage_sas_key")) {
                o.entry(k("azure_storage_account_key"))
                    .or_insert_with(|| EMULATOR_KEY.into());
            }
            let base = az
                .endpoint
                .clone()
                .or_else(|| env_var("AZURITE_BLOB_STORAGE_URL"))
                .unwrap_or_else(|| "http://127.0.0.1:10000".into());
            let base = base.trim_end_matches('/');
            let endpoint = if base.ends_with(&format!("/{account}")) {
                base.to_string()
            } else {
                format!("{base}/{account}")
            };
            o.insert(k("azure_storage_endpoint"), endpoint);
            o.insert(k("azure_allow_http"), "true".into());
            o.insert(AZURITE_KEY.into(), "true".into());
        }
        let secs = |d: Duration| format!("{}ms", d.as_millis());
        set(&mut o, "timeout", self.timeout.map(secs));
        set(&mut o, "connect_timeout", self.connect_timeout.map(secs));
        set(
            &mut o,
            "max_retries",
            self.max_retries.map(|n| n.to_string()),
        );
        set(&mut o, "retry_timeout", self.retry_timeout.map(secs));
        StorageOptions(o)
    }
}

/// The canonical object_store name of an S3 or Azure option (`aws_endpoint_url` and
/// `aws_endpoint` are one option), or `None` when neither store knows it.
fn store_key(key: &str) -> Option<String> {
    use object_store::aws::AmazonS3ConfigKey;
    use object_store::azure::AzureConfigKey;
    use std::str::FromStr;
    if key.starts_with("azure_")
        && let Ok(k) = AzureConfigKey::from_str(key)
    {
        return Some(k.as_ref().to_string());
    }
    AmazonS3ConfigKey::from_str(key)
        .map(|k| k.as_ref().to_string())
        .ok()
        .or_else(|| {
            AzureConfigKey::from_str(key)
                .ok()
                .map(|k| k.as_ref().to_string())
        })
}

/// Options for object_store and delta-rs. Values are never printed: they hold credentials.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct StorageOptions(HashMap<String, String>);

impl StorageOptions {
    /// The options as a map (keys are object_store / delta-rs option names).
    pub fn as_map(&self) -> &HashMap<String, String> {
        &self.0
    }

    /// Iterates over key, value pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter()
    }
}

impl From<HashMap<String, String>> for StorageOptions {
    fn from(map: HashMap<String, String>) -> Self {
        StorageOptions(map)
    }
}

impl fmt::Debug for StorageOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<&String> = self.0.keys().collect();
        keys.sort();
        f.debug_set().entries(keys).finish()
    }
}

/// The process environment as `(name, value)` pairs (for [`StorageSettings::options`]).
pub fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// Builds the object store for a URL with delta-rs' store factories (`file`, `memory`, `s3`,
/// `s3a`, `az`, `abfs`, `abfss`, `adl`, `azure`): the same code path, credentials and retry
/// settings as the Delta tables use. Returns the store (rooted at the bucket or container)
/// and the URL's path inside it.
///
/// # Errors
/// An unsupported scheme, or options the store rejects (bad credentials format, bad URL).
pub fn object_store_for(
    url: &Url,
    options: &StorageOptions,
) -> std::result::Result<(Arc<dyn ObjectStore>, object_store::path::Path), String> {
    static REGISTER: std::sync::Once = std::sync::Once::new();
    // delta-rs registers these from a constructor too; doing it here does not depend on it.
    REGISTER.call_once(|| {
        deltalake::aws::register_handlers(None);
        deltalake::azure::register_handlers(None);
    });
    let scheme = Url::parse(&format!("{}://", url.scheme())).map_err(|e| e.to_string())?;
    let Some(factory) = deltalake::logstore::object_store_factories()
        .get(&scheme)
        .map(|f| f.value().clone())
    else {
        return Err(format!(
            "scheme `{}` is not supported (use a path, file://, s3://, az://, abfss://)",
            url.scheme()
        ));
    };
    let config = deltalake::logstore::StorageConfig::parse_options(options.iter())
        .map_err(|e| e.to_string())?;
    let (store, prefix) = factory
        .parse_url_opts(url, &config)
        .map_err(|e| e.to_string())?;
    if options
        .as_map()
        .get(AZURITE_KEY)
        .is_some_and(|v| v == "true")
    {
        return Ok((
            Arc::new(crate::emulator::ListFromByFilter::new(store)),
            prefix,
        ));
    }
    Ok((store, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_project_file_overrides_the_standard_variables() {
        let settings = StorageSettings {
            s3: S3Settings {
                region: Some("eu-west-1".into()),
                secret_access_key: Some(Secret::new("from-file")),
                ..S3Settings::default()
            },
            timeout: Some(Duration::from_secs(5)),
            max_retries: Some(3),
            ..StorageSettings::default()
        };
        let o = settings.options(&env(&[
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "id-from-env"),
            ("AWS_SECRET_ACCESS_KEY", "from-env"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
            ("AWS_NOT_AN_OPTION", "x"),
            ("HOME", "/root"),
        ]));
        let m = o.as_map();
        assert_eq!(m["aws_region"], "eu-west-1");
        assert_eq!(m["aws_access_key_id"], "id-from-env");
        assert_eq!(m["aws_secret_access_key"], "from-file");
        assert_eq!(m["aws_endpoint"], "http://127.0.0.1:9000");
        assert_eq!(m["timeout"], "5000ms");
        assert_eq!(m["max_retries"], "3");
        assert!(!m.contains_key("aws_not_an_option") && !m.contains_key("home"));
    }

    #[test]
    fn the_emulator_switch_spells_out_azurite() {
        let settings = StorageSettings {
            azure: AzureSettings {
                use_emulator: Some(true),
                endpoint: Some("http://127.0.0.1:10123/".into()),
                ..AzureSettings::default()
            },
            ..StorageSettings::default()
        };
        let m = settings.options(&[]).as_map().clone();
        assert_eq!(m["azure_storage_account_name"], "devstoreaccount1");
        assert_eq!(
            m["azure_storage_endpoint"],
            "http://127.0.0.1:10123/devstoreaccount1"
        );
        assert_eq!(m["allow_http"], "true");
        assert!(m.contains_key("azure_storage_account_key"));
        // From the environment, with Azurite's own variable for the address.
        let m = StorageSettings::default()
            .options(&env(&[
                ("AZURE_STORAGE_USE_EMULATOR", "true"),
                ("AZURITE_BLOB_STORAGE_URL", "http://127.0.0.1:10999"),
            ]))
            .as_map()
            .clone();
        assert_eq!(
            m["azure_storage_endpoint"],
            "http://127.0.0.1:10999/devstoreaccount1"
        );
    }
}
