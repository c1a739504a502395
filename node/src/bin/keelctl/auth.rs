//! `keelctl auth ...`: micro's accounts, tokens and rules on the cluster (`keel.v1.Auth`), one
//! function per subcommand, each parse → call → print. Secrets and tokens are printed only by
//! the commands that make them (generate, token), for the caller to keep.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Subcommand, ValueEnum};
use keel_client::auth::{Access, Account, Auth, GenerateOptions, GrpcAuth, Resource, Rule, Token, TokenOptions};
use keel_client::ConnectOptions;
use serde_json::json;

use crate::output::{cell, metadata_cell};
use crate::shared::parse_key_value;
use crate::Format;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Turns etcd's auth on (etcd's AuthEnable): needs a `root` user with the root role first.
    Enable {
        /// NAME:PASSWORD, as etcdctl's --user (not needed while auth is off).
        #[arg(long)]
        user: Option<String>,
    },
    /// Turns etcd's auth off; root's.
    Disable {
        /// NAME:PASSWORD of root.
        #[arg(long)]
        user: Option<String>,
    },
    /// Creates an account; prints its secret (generated unless --secret is given) once.
    Generate {
        id: String,
        /// A scope rules may name (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// `user` (default), `service`, ...
        #[arg(long = "type", default_value = "")]
        r#type: String,
        /// KEY=VALUE (repeatable).
        #[arg(long = "metadata", value_parser = parse_key_value)]
        metadata: Vec<(String, String)>,
        #[arg(long)]
        secret: Option<String>,
    },
    /// Signs in with an id and secret, or a refresh token; prints the access and refresh tokens.
    Token {
        /// The account id (with --secret).
        id: Option<String>,
        #[arg(long, requires = "id")]
        secret: Option<String>,
        #[arg(long, conflicts_with_all = ["id", "secret"])]
        refresh_token: Option<String>,
        /// How long the access token lasts, in seconds (at most a day).
        #[arg(long, default_value_t = 60)]
        expiry: u64,
    },
    /// The account an access token speaks for.
    Inspect { token: String },
    /// Every account, without secrets.
    Accounts,
    /// Deletes an account; its tokens stop working.
    DeleteAccount { id: String },
    /// Changes an account's secret, given the current one; earlier tokens stop working.
    ChangeSecret {
        id: String,
        #[arg(long)]
        old: String,
        #[arg(long)]
        new: String,
    },
    /// Every rule, in the order Verify breaks ties between equal priorities.
    Rules,
    /// Adds a rule (or replaces the rule with its id where it stands).
    Grant {
        id: String,
        /// "" = everyone, "*" = any account, or a scope.
        #[arg(long, default_value = "")]
        scope: String,
        /// TYPE:NAME:ENDPOINT, e.g. service:greeter:Greeter.Hello or service:*:*.
        #[arg(long, value_parser = parse_resource)]
        resource: Resource,
        #[arg(long, value_enum, default_value_t = AccessArg::Granted)]
        access: AccessArg,
        /// Higher is tried first.
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        priority: i32,
    },
    /// Removes a rule.
    Revoke { id: String },
    /// Whether an access token's account (or, without --token, nobody) may reach a resource;
    /// exits 1 when it may not.
    Verify {
        /// TYPE:NAME:ENDPOINT.
        #[arg(value_parser = parse_resource)]
        resource: Resource,
        #[arg(long)]
        token: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AccessArg {
    Granted,
    Denied,
}

pub async fn run(
    command: Command,
    endpoints: &[String],
    options: &ConnectOptions,
    format: Format,
) -> anyhow::Result<()> {
    let auth = GrpcAuth::connect_with(endpoints, options).await?;
    match command {
        Command::Enable { user } => {
            let mut etcd = etcd_as(endpoints, options, user.as_deref()).await?;
            etcd.auth_enable().await.map_err(|e| {
                let message = etcd_message(&e);
                if message.contains("root user does not") {
                    anyhow::anyhow!(
                        "{message}; create it first: etcdctl user add root && etcdctl user grant-role root root"
                    )
                } else {
                    anyhow::anyhow!("{message}")
                }
            })?;
            done(format, "enabled", "auth", Ok(()))
        }
        Command::Disable { user } => {
            let mut etcd = etcd_as(endpoints, options, user.as_deref()).await?;
            etcd.auth_disable().await.map_err(|e| anyhow::anyhow!("{}", etcd_message(&e)))?;
            done(format, "disabled", "auth", Ok(()))
        }
        Command::Generate { id, scopes, r#type, metadata, secret } => {
            let options = GenerateOptions {
                r#type,
                scopes,
                metadata: metadata.into_iter().collect(),
                provider: String::new(),
                secret,
            };
            print_accounts(format, &[auth.generate(&id, options).await?])
        }
        Command::Token { id, secret, refresh_token, expiry } => {
            let expiry = Duration::from_secs(expiry);
            let options = match (id, secret, refresh_token) {
                (Some(id), Some(secret), None) => TokenOptions { expiry, ..TokenOptions::with_secret(id, secret) },
                (None, None, Some(refresh)) => TokenOptions { expiry, ..TokenOptions::with_refresh_token(refresh) },
                _ => anyhow::bail!("give an account id and --secret, or --refresh-token"),
            };
            print_token(format, &auth.token(options).await?)
        }
        Command::Inspect { token } => print_accounts(format, &[auth.inspect(&token).await?]),
        Command::Accounts => print_accounts(format, &auth.accounts().await?),
        Command::DeleteAccount { id } => done(format, "deleted account", &id, auth.delete_account(&id).await),
        Command::ChangeSecret { id, old, new } => {
            done(format, "changed the secret of", &id, auth.change_secret(&id, &old, &new).await)
        }
        Command::Rules => print_rules(format, &auth.rules().await?),
        Command::Grant { id, scope, resource, access, priority } => {
            let access = match access {
                AccessArg::Granted => Access::Granted,
                AccessArg::Denied => Access::Denied,
            };
            let rule = Rule { id: id.clone(), scope, resource, access, priority };
            done(format, "granted rule", &id, auth.grant(rule).await)
        }
        Command::Revoke { id } => done(format, "revoked rule", &id, auth.revoke(&id).await),
        Command::Verify { resource, token } => {
            let account = match token {
                Some(token) => Some(auth.inspect(&token).await?),
                None => None,
            };
            auth.verify(account.as_ref(), &resource).await?;
            let who = account.map_or_else(|| "anyone".to_string(), |account| account.id);
            done(format, "allowed", &format!("{who} → {}", resource_text(&resource)), Ok(()))
        }
    }
}

/// etcd's client for `endpoints`, signed in as `user` (NAME:PASSWORD) if given.
async fn etcd_as(
    endpoints: &[String],
    options: &ConnectOptions,
    user: Option<&str>,
) -> anyhow::Result<etcd_client::Client> {
    let mut etcd = etcd_client::ConnectOptions::new().with_connect_timeout(Duration::from_secs(5));
    if let Some(tls) = options.tls_config() {
        etcd = etcd.with_tls(tls);
    }
    if let Some(user) = user {
        let (name, password) = user.split_once(':').ok_or_else(|| anyhow::anyhow!("--user is NAME:PASSWORD"))?;
        etcd = etcd.with_user(name, password);
    }
    etcd_client::Client::connect(endpoints, Some(etcd)).await.map_err(|e| anyhow::anyhow!("{}", etcd_message(&e)))
}

/// etcd's own text, without etcd-client's wrapping.
fn etcd_message(error: &etcd_client::Error) -> String {
    match error {
        etcd_client::Error::GRpcStatus(status) => status.message().to_string(),
        other => other.to_string(),
    }
}

/// TYPE:NAME:ENDPOINT; the endpoint may hold colons of its own (a web path never does here).
fn parse_resource(text: &str) -> Result<Resource, String> {
    let mut parts = text.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(r#type), Some(name), Some(endpoint)) if ![r#type, name, endpoint].contains(&"") => {
            Ok(Resource { r#type: r#type.into(), name: name.into(), endpoint: endpoint.into() })
        }
        _ => Err(format!("{text:?} is not TYPE:NAME:ENDPOINT (e.g. service:greeter:Greeter.Hello, service:*:*)")),
    }
}

fn resource_text(resource: &Resource) -> String {
    format!("{}:{}:{}", resource.r#type, resource.name, resource.endpoint)
}

fn done(format: Format, action: &str, what: &str, result: keel_client::Result<()>) -> anyhow::Result<()> {
    result?;
    match format {
        Format::Json => println!("{}", json!({ "result": action, "name": what })),
        Format::Table => println!("{action} {}", cell(what)),
    }
    Ok(())
}

fn print_accounts(format: Format, accounts: &[Account]) -> anyhow::Result<()> {
    for account in accounts {
        match format {
            Format::Json => println!(
                "{}",
                json!({
                    "id": account.id,
                    "type": account.r#type,
                    "scopes": account.scopes,
                    "metadata": account.metadata,
                    "provider": account.provider,
                    "secret": account.secret,
                })
            ),
            Format::Table => {
                let scopes = if account.scopes.is_empty() { "-".to_string() } else { cell(&account.scopes.join(",")) };
                let metadata = metadata_cell(&account.metadata);
                println!("{}\t{}\t{scopes}\t{metadata}", cell(&account.id), cell(&account.r#type));
                if let Some(secret) = &account.secret {
                    println!("secret: {secret}");
                }
            }
        }
    }
    Ok(())
}

fn print_token(format: Format, token: &Token) -> anyhow::Result<()> {
    let unix = |at: SystemTime| at.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs());
    match format {
        Format::Json => println!(
            "{}",
            json!({
                "access_token": token.access_token,
                "refresh_token": token.refresh_token,
                "created": unix(token.created),
                "expiry": unix(token.expiry),
            })
        ),
        Format::Table => {
            println!("access token: {}", token.access_token);
            println!("refresh token: {}", token.refresh_token);
            println!("expires in: {}s", unix(token.expiry).saturating_sub(unix(token.created)));
        }
    }
    Ok(())
}

fn print_rules(format: Format, rules: &[Rule]) -> anyhow::Result<()> {
    for rule in rules {
        let access = match rule.access {
            Access::Granted => "granted",
            Access::Denied => "denied",
        };
        let scope = match rule.scope.as_str() {
            "" => "(public)",
            scope => scope,
        };
        match format {
            Format::Json => println!(
                "{}",
                json!({
                    "id": rule.id,
                    "scope": rule.scope,
                    "resource": resource_text(&rule.resource),
                    "access": access,
                    "priority": rule.priority,
                })
            ),
            Format::Table => println!(
                "{}\t{}\t{}\t{access}\t{}",
                cell(&rule.id),
                cell(scope),
                cell(&resource_text(&rule.resource)),
                rule.priority
            ),
        }
    }
    Ok(())
}
