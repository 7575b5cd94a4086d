//! The administrator's configuration file (TOML, versioned, unknown keys rejected): the
//! organization's accounts, and the tokens of agents, hubs and clients.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use anyhow::{bail, Context};
use serde::Deserialize;

use estate_common::model::AccountId;

use crate::api::auth::{digest, is_hub_name, HubAccounts, Identity, Role, TokenDigest, MAX_HUB_NAME_BYTES};
use crate::deliver::SinkConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Format version; only 1 exists.
    pub version: u32,
    #[serde(default)]
    pub organization: OrganizationConfig,
    #[serde(default)]
    pub agents: Vec<AgentConfig>,
    /// Hubs: one process that reports for many accounts (`estate-agent hub`).
    #[serde(default)]
    pub hubs: Vec<HubConfig>,
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
    /// Require, besides the token, a client certificate (mutual TLS) that names the same
    /// agent account or client role. Needs `--client-ca`.
    #[serde(default)]
    pub require_certificate_identity: bool,
    /// Where findings are delivered besides Estate's own API (`deliver/`).
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
    /// The accounts inside the organization (`organization.accounts` and every agent's),
    /// checked by [`Config::parse`], the one way a configuration is read.
    #[serde(skip)]
    members: BTreeSet<AccountId>,
    /// The accounts of the configured agents and listed hub accounts, checked by
    /// [`Config::parse`].
    #[serde(skip)]
    agent_accounts: BTreeSet<AccountId>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrganizationConfig {
    /// The AWS Organizations ID (`o-...`), when known.
    pub id: Option<String>,
    /// Accounts inside the organization. Accounts of configured agents are inside too.
    #[serde(default)]
    pub accounts: Vec<String>,
    /// The organization's paths (`o-.../r-.../ou-.../`, as `aws:PrincipalOrgPaths` carries
    /// them) of the roots and OUs that hold accounts. Without them, a policy path under the
    /// organization still decides INTERNAL; with them, paths are matched exactly.
    #[serde(default)]
    pub paths: Vec<String>,
}

/// One member agent: the single account it may report for, and its token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub name: String,
    pub account_id: String,
    #[serde(flatten)]
    pub token: TokenConfig,
}

/// One hub: the accounts it may report for (a list, or `"organization"`: every account of the
/// organization, as the administrator knows it when the hub reports), and its token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    pub name: String,
    pub accounts: HubAccountsConfig,
    #[serde(flatten)]
    pub token: TokenConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum HubAccountsConfig {
    /// `"organization"`.
    Named(String),
    Listed(Vec<String>),
}

impl HubConfig {
    /// The accounts, checked.
    fn accounts(&self) -> anyhow::Result<HubAccounts> {
        match &self.accounts {
            HubAccountsConfig::Named(name) if name == "organization" => Ok(HubAccounts::Organization),
            HubAccountsConfig::Named(_) => {
                bail!("hub `{}`: `accounts` is `\"organization\"` or a list of account IDs", self.name)
            }
            HubAccountsConfig::Listed(list) if list.is_empty() => {
                bail!("hub `{}` lists no accounts (give at least one, or `\"organization\"`)", self.name)
            }
            HubAccountsConfig::Listed(list) => list
                .iter()
                .map(|a| {
                    AccountId::parse(a.as_str()).map_err(|_| {
                        anyhow::anyhow!(
                            "hub `{}` lists `{a}` in `accounts`, which is not a 12-digit account ID",
                            self.name
                        )
                    })
                })
                .collect::<anyhow::Result<_>>()
                .map(HubAccounts::Listed),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub name: String,
    pub role: Role,
    #[serde(flatten)]
    pub token: TokenConfig,
}

/// A token, given either in clear or as the hex SHA-256 of its bytes (preferred: the
/// config file then holds no secret).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub token: Option<String>,
    pub token_sha256: Option<String>,
}

/// Is `value` one of the example config's placeholders (`REPLACE-…`, `replace-with-…`)?
fn is_placeholder(value: &str) -> bool {
    value.get(..8).is_some_and(|head| head.eq_ignore_ascii_case("replace-"))
}

impl TokenConfig {
    fn digest(&self, who: &str) -> anyhow::Result<TokenDigest> {
        for value in [&self.token, &self.token_sha256].into_iter().flatten() {
            if is_placeholder(value) {
                bail!(
                    "the token of `{who}` is still the example's placeholder `{value}`: replace it \
                     (deploy/README.md, \"Values you must fill in\")"
                );
            }
        }
        match (&self.token, &self.token_sha256) {
            (Some(token), None) => {
                if token.len() < 16 {
                    bail!("the token of `{who}` is shorter than 16 characters");
                }
                Ok(digest(token))
            }
            (None, Some(hex_digest)) => {
                let bytes = hex::decode(hex_digest).with_context(|| format!("`token_sha256` of `{who}` is not hex"))?;
                bytes.try_into().map_err(|_| anyhow::anyhow!("`token_sha256` of `{who}` is not 32 bytes"))
            }
            _ => bail!("`{who}` needs exactly one of `token` and `token_sha256`"),
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config `{}`", path.display()))?;
        Self::parse(&text).with_context(|| format!("in config `{}`", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut config: Config = toml::from_str(text).map_err(|error| anyhow::anyhow!(describe(text, &error)))?;
        if config.version != 1 {
            bail!("unsupported config `version` {} (this administrator reads version 1)", config.version);
        }
        if let Some(id) = config.organization.id.as_deref().filter(|id| is_placeholder(id)) {
            bail!("`organization.id` is still the example's placeholder `{id}`: replace it");
        }
        for account in &config.organization.accounts {
            if is_placeholder(account) {
                bail!("`organization.accounts` still holds the example's placeholder `{account}`: replace it");
            }
            let Ok(id) = AccountId::parse(account.as_str()) else {
                bail!("`organization.accounts` holds `{account}`, which is not a 12-digit account ID");
            };
            config.members.insert(id);
        }
        for path in &config.organization.paths {
            let Some(id) = config.organization.id.as_deref() else {
                bail!("`organization.paths` needs `organization.id`");
            };
            let valid = path.strip_prefix(id).and_then(|rest| rest.strip_prefix('/')).is_some_and(|rest| {
                rest.ends_with('/')
                    && rest.split_terminator('/').enumerate().all(|(i, part)| {
                        (if i == 0 { part.starts_with("r-") } else { part.starts_with("ou-") })
                            && part.len() > 3
                            && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    })
            });
            if !valid {
                bail!("`organization.paths` holds `{path}`, which is not `{id}/r-.../ou-.../` ending in `/`");
            }
        }
        let mut agent_names = BTreeSet::new();
        for agent in &config.agents {
            // A revoked token ends the streams of the agent it names: two agents must not share
            // a name.
            if !agent_names.insert(agent.name.as_str()) {
                bail!("two agents are named `{}`", agent.name);
            }
            let Ok(id) = AccountId::parse(agent.account_id.as_str()) else {
                bail!(
                    "agent `{}` has `account_id` `{}`, which is not a 12-digit account ID",
                    agent.name,
                    agent.account_id
                );
            };
            config.members.insert(id.clone());
            config.agent_accounts.insert(id);
        }
        let mut hub_names = BTreeSet::new();
        for hub in &config.hubs {
            if !is_hub_name(&hub.name) {
                bail!(
                    "hub name `{}` is not 1 to {MAX_HUB_NAME_BYTES} letters, digits, `.`, `_` or `-` (a certificate \
                     names it as `estate:hub:NAME`)",
                    estate_common::text::escape(&hub.name, 80)
                );
            }
            if !hub_names.insert(hub.name.as_str()) {
                bail!("two hubs are named `{}`", hub.name);
            }
            // Listed accounts are inside the organization and expected to report, as an
            // agent's account is.
            if let HubAccounts::Listed(listed) = hub.accounts()? {
                config.members.extend(listed.iter().cloned());
                config.agent_accounts.extend(listed);
            }
        }
        config.identities()?;
        let mut names = BTreeSet::new();
        for sink in &config.sinks {
            sink.check()?;
            if !names.insert(sink.name()) {
                bail!("two sinks are named `{}`", sink.name());
            }
        }
        Ok(config)
    }

    /// Token digest → who presents it. Duplicate tokens are an error.
    pub fn identities(&self) -> anyhow::Result<HashMap<TokenDigest, Identity>> {
        let mut out = HashMap::new();
        let agents = self.agents.iter().map(|a| {
            let account_id = AccountId::parse(a.account_id.as_str())?;
            Ok::<_, anyhow::Error>((a.token.digest(&a.name)?, Identity::Agent { name: a.name.clone(), account_id }))
        });
        let clients = self
            .clients
            .iter()
            .map(|c| Ok((c.token.digest(&c.name)?, Identity::Client { name: c.name.clone(), role: c.role })));
        let hubs = self
            .hubs
            .iter()
            .map(|h| Ok((h.token.digest(&h.name)?, Identity::Hub { name: h.name.clone(), accounts: h.accounts()? })));
        for entry in agents.chain(hubs).chain(clients) {
            let (digest, identity) = entry?;
            if out.insert(digest, identity.clone()).is_some() {
                bail!("two entries share the token of `{}`", identity.name());
            }
        }
        Ok(out)
    }

    /// Does the file hold a token in clear (`token` rather than `token_sha256`)?
    pub fn has_plaintext_tokens(&self) -> bool {
        let agents = self.agents.iter().map(|a| &a.token);
        let hubs = self.hubs.iter().map(|h| &h.token);
        agents.chain(hubs).chain(self.clients.iter().map(|c| &c.token)).any(|t| t.token.is_some())
    }

    /// The accounts inside the organization: the configured ones and every agent's.
    pub fn organization_accounts(&self) -> &BTreeSet<AccountId> {
        &self.members
    }

    /// The accounts of the configured agents and the hubs' listed accounts: expected to report
    /// even before they connect.
    pub fn agent_accounts(&self) -> &BTreeSet<AccountId> {
        &self.agent_accounts
    }
}

/// The keys this file may hold, named in parse errors; any other key or value is not repeated
/// (a token in the wrong place must not reach a log).
const KNOWN_NAMES: &[&str] = &[
    "version",
    "organization",
    "id",
    "accounts",
    "paths",
    "agents",
    "hubs",
    "clients",
    "name",
    "account_id",
    "role",
    "token",
    "token_sha256",
    "require_certificate_identity",
    "read-only",
    "operator",
];

/// A TOML error as line, column, key path and what went wrong, never the text of the file:
/// the `toml` crate's own message prints the offending line, which may hold a token, and
/// quotes values (`invalid type: string "…"`), which may be one.
fn describe(text: &str, error: &toml::de::Error) -> String {
    let at = error.span().map_or(text.len(), |span| span.start).min(text.len());
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or_default().chars().count() + 1;
    let message = redact_quoted(error.message()).split_whitespace().collect::<Vec<_>>().join(" ");
    let path = key_path(text, line);
    let path = if path.is_empty() { String::new() } else { format!(" (at `{path}`)") };
    format!("TOML error at line {line}, column {column}{path}: {message}")
}

/// `message` with every quoted part (`…` or "…") that is not a known key, role or TOML
/// punctuation replaced by `…`.
fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(open) = rest.find(['`', '"']) {
        let quote = rest[open..].chars().next().unwrap_or('`');
        out.push_str(&rest[..=open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find(quote) else {
            // An unmatched quote: what follows it might be a value.
            out.push('…');
            return out;
        };
        let inner = &after[..close];
        let punctuation = inner.chars().count() <= 2 && !inner.chars().any(char::is_alphanumeric);
        out.push_str(if KNOWN_NAMES.contains(&inner) || punctuation { inner } else { "…" });
        out.push(quote);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Where line `line` (1-based) of the file sits: the table it is in (`agents[1]`) and the key
/// it sets, each only when it is one of [`KNOWN_NAMES`].
fn key_path(text: &str, line: usize) -> String {
    let mut table = String::new();
    let mut entries: HashMap<String, usize> = HashMap::new();
    // The table headers up to this line, its own included (an unknown key is reported at the
    // header of its table).
    for header in text.lines().take(line).map(str::trim) {
        if let Some(name) = header.strip_prefix("[[").and_then(|h| h.split("]]").next()) {
            let name = name.trim().to_owned();
            let index = entries.entry(name.clone()).and_modify(|i| *i += 1).or_insert(0);
            table = if KNOWN_NAMES.contains(&name.as_str()) { format!("{name}[{index}]") } else { "…".into() };
        } else if let Some(name) = header.strip_prefix('[').and_then(|h| h.split(']').next()) {
            let name = name.trim();
            table = if KNOWN_NAMES.contains(&name) { name.to_owned() } else { "…".into() };
        }
    }
    let own = text.lines().nth(line.saturating_sub(1)).unwrap_or_default();
    let key = own.split_once('=').map(|(key, _)| key.trim()).filter(|key| KNOWN_NAMES.contains(key));
    match (table.is_empty(), key) {
        (true, None) => String::new(),
        (true, Some(key)) => key.to_owned(),
        (false, None) => table,
        (false, Some(key)) => format!("{table}.{key}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        version = 1
        [organization]
        id = "o-abc123"
        accounts = ["111111111111"]
        [[agents]]
        name = "a"
        account_id = "222222222222"
        token = "agent-token-0123456789"
        [[clients]]
        name = "ops"
        role = "operator"
        token_sha256 = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
    "#;

    /// Hubs: a listed account is inside and expected to report; `"organization"` adds none;
    /// names and accounts are checked, and a hub's token is one more identity.
    #[test]
    fn hubs_name_their_accounts_or_the_organization() {
        let listed = format!(
            "{GOOD}\n[[hubs]]\nname = \"central\"\naccounts = [\"333333333333\"]\ntoken = \"hub-token-0123456789\"\n"
        );
        let config = Config::parse(&listed).unwrap();
        let c: AccountId = "333333333333".parse().unwrap();
        assert!(config.organization_accounts().contains(&c) && config.agent_accounts().contains(&c));
        let identities = config.identities().unwrap();
        assert!(identities.values().any(|i| matches!(i, Identity::Hub { name, accounts: HubAccounts::Listed(l) } if name == "central" && l.contains(&c))));
        assert!(config.has_plaintext_tokens());
        let organization = listed.replace("[\"333333333333\"]", "\"organization\"");
        let config = Config::parse(&organization).unwrap();
        assert!(!config.organization_accounts().contains(&c));
        for (bad, said) in [
            (listed.replace("[\"333333333333\"]", "\"everyone\""), "or a list of account IDs"),
            (listed.replace("333333333333", "3333"), "not a 12-digit account ID"),
            (listed.replace("name = \"central\"", "name = \"a b\""), "is not 1 to 64 letters"),
            (format!("{listed}\n[[hubs]]\nname = \"central\"\naccounts = \"organization\"\ntoken = \"hub-token-9876543210\"\n"), "two hubs are named"),
            (listed.replace("hub-token-0123456789", "agent-token-0123456789"), "share the token"),
            (listed.replace("[\"333333333333\"]", "[]"), "lists no accounts"),
            (
                format!("{GOOD}\n[[agents]]\nname = \"a\"\naccount_id = \"333333333333\"\ntoken = \"agent-token-9876543210\"\n"),
                "two agents are named `a`",
            ),
        ] {
            let error = format!("{:#}", Config::parse(&bad).unwrap_err());
            assert!(error.contains(said), "{said}: {error}");
        }
    }

    #[test]
    fn parses_and_maps_tokens() {
        let config = Config::parse(GOOD).unwrap();
        let ids = config.identities().unwrap();
        assert_eq!(
            ids.get(&digest("agent-token-0123456789")),
            Some(&Identity::Agent { name: "a".into(), account_id: "222222222222".parse().unwrap() })
        );
        assert_eq!(ids.get(&digest("password")), Some(&Identity::Client { name: "ops".into(), role: Role::Operator }));
        assert_eq!(config.organization_accounts().len(), 2);
    }

    #[test]
    fn parse_errors_name_the_place_but_never_repeat_the_text() {
        const SECRET: &str = "s3cr3t-0123456789abcdef";
        let cases = [
            // An unterminated string: the `toml` crate would print the whole line.
            (GOOD.replace("token = \"agent-token-0123456789\"", &format!("token = \"{SECRET}")), 9, "agents[0].token"),
            // A token where a number belongs: serde would quote the value.
            (GOOD.replace("version = 1", &format!("version = \"{SECRET}\"")), 2, "version"),
            // A token where a role belongs: serde would quote the unknown variant.
            (GOOD.replace("role = \"operator\"", &format!("role = \"{SECRET}\"")), 12, "clients[0].role"),
            // A token pasted as a key of its own.
            // (Reported at its table's header.)
            (GOOD.replace("name = \"ops\"", &format!("name = \"ops\"\n{SECRET} = 1")), 10, "clients[0]"),
            // A token pasted without a key at all.
            (GOOD.replace("name = \"ops\"", &format!("name = \"ops\"\n\"{SECRET}\"")), 12, "clients[0]"),
        ];
        for (text, line, path) in cases {
            let error = format!("{:#}", Config::parse(&text).unwrap_err());
            assert!(!error.contains("s3cr3t"), "{error}");
            assert!(error.contains(&format!("line {line}, column")), "{error}");
            assert!(error.contains(&format!("(at `{path}`)")), "{error}");
        }
        // What is safe to say is still said.
        let unknown = format!("{:#}", Config::parse("version = 1\nsurprise = 2").unwrap_err());
        assert!(unknown.contains("unknown field") && unknown.contains("`version`"), "{unknown}");
        assert!(!unknown.contains("surprise"), "{unknown}");
    }

    #[test]
    fn organization_paths_must_be_under_the_organization() {
        let with = |paths: &str| {
            GOOD.replace("accounts = [\"111111111111\"]", &format!("accounts = [\"111111111111\"]\npaths = {paths}"))
        };
        let config = Config::parse(&with(r#"["o-abc123/r-ab12/", "o-abc123/r-ab12/ou-ab12-11111111/"]"#)).unwrap();
        assert_eq!(config.organization.paths.len(), 2);
        for bad in [
            r#"["o-other/r-ab12/"]"#,
            r#"["o-abc123/r-ab12"]"#,
            r#"["o-abc123/ou-ab12-1/"]"#,
            r#"["o-abc123/r-ab12/*/"]"#,
        ] {
            let error = Config::parse(&with(bad)).unwrap_err().to_string();
            assert!(error.contains("organization.paths"), "{bad}: {error}");
        }
        let no_id = with(r#"["o-abc123/r-ab12/"]"#).replace("id = \"o-abc123\"\n", "");
        assert!(Config::parse(&no_id).unwrap_err().to_string().contains("needs `organization.id`"));
    }

    #[test]
    fn rejects_unknown_keys_bad_versions_and_short_tokens() {
        assert!(Config::parse("version = 1\nsurprise = 2").is_err());
        assert!(Config::parse("version = 2").is_err());
        let short = "version = 1\n[[agents]]\nname = \"a\"\naccount_id = \"222222222222\"\ntoken = \"short\"";
        assert!(Config::parse(short).unwrap_err().to_string().contains("shorter"));
        let both = GOOD.replace("token = \"agent", "token_sha256 = \"00\"\ntoken = \"agent");
        assert!(Config::parse(&both).is_err());
        let placeholder = GOOD.replace("agent-token-0123456789", "replace-with-a-long-random-token");
        assert!(Config::parse(&placeholder).unwrap_err().to_string().contains("placeholder"));
        let example = std::fs::read_to_string(
            std::env::var_os("CARGO_MANIFEST_DIR")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
                .join("../deploy/estate.example.toml"),
        );
        let error = Config::parse(&example.unwrap()).unwrap_err().to_string();
        assert!(error.contains("placeholder") && error.contains("replace it"), "{error}");
    }
}
