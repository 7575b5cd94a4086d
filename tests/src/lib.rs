//! The end-to-end sandbox: starts moto (the local AWS API server), seeds accounts and buckets
//! through the real AWS SDK, runs the real `estate-admin` and `estate-agent` binaries and
//! `estatectl`, and tears everything down when dropped.
//!
//! moto is started through `scripts/moto_server.py`, which corrects the few S3 responses
//! whose XML differs from S3's (see that file); nothing in Estate's parsing is loosened.
//! A missing virtualenv or binary is a loud failure that says how to fix it.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::config::Credentials;

pub use aws_sdk_s3;
pub use aws_sdk_s3control;

pub mod faultproxy;
pub mod pki;
pub mod receiver;

/// The repository root.
pub fn repo_root() -> PathBuf {
    // Cargo's directory at run time when cargo runs us (a build reused from another checkout
    // keeps that checkout's compile-time path); the compile-time one for the benchmark
    // binaries run by hand.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    let manifest = manifest.unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    manifest.parent().expect("tests/ has a parent").to_path_buf()
}

/// A built workspace binary (`estate-admin`, `estate-agent`, `estatectl`), next to the test
/// executable's profile directory.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // Tests run from target/<profile>/deps/, binaries (benchmarks) from target/<profile>/.
    let mut dir = exe.parent().expect("an executable has a directory");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("deps has a parent");
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "`{}` is missing: build the binaries first with `cargo build --workspace --bins` (the README's test command does)",
        path.display()
    );
    path
}

/// A free TCP port on loopback (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A child process that is killed when dropped.
#[derive(Debug)]
pub struct Process {
    pub child: Child,
    pub name: String,
    pub log: PathBuf,
}

impl Process {
    /// SIGKILL, no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits for a line starting with `prefix` on the child's stdout.
fn wait_for_line(child: &mut Child, prefix: &str, what: &str, timeout: Duration) -> anyhow::Result<String> {
    let stdout = child.stdout.take().context("stdout not captured")?;
    let (tx, rx) = std::sync::mpsc::channel();
    let prefix = prefix.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with(&prefix) {
                let _ = tx.send(line);
            }
        }
    });
    rx.recv_timeout(timeout).with_context(|| format!("{what} did not become ready within {timeout:?}"))
}

/// A client of one AWS service at `moto`'s address, signed with `credentials`, in `region`,
/// with any further builder calls given. Every SDK crate has its own config type with the
/// same builder, hence a macro.
macro_rules! moto_client {
    ($sdk:ident, $moto:expr, $credentials:expr, $region:expr $(, $call:ident($arg:expr))*) => {
        $sdk::Client::from_conf(
            $sdk::config::Builder::new()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new(String::from($region)))
                .endpoint_url(&$moto.endpoint)
                .credentials_provider($credentials)
                $(.$call($arg))*
                .build(),
        )
    };
}

/// moto in server mode on a free loopback port.
#[derive(Debug)]
pub struct Moto {
    pub process: Process,
    pub endpoint: String,
    _logs: tempfile::TempDir,
}

impl Moto {
    pub fn start() -> anyhow::Result<Self> {
        let python = repo_root().join(".venv/bin/python");
        if !python.exists() {
            bail!(
                "moto is not installed: `{}` is missing. Run `scripts/setup.sh` (it creates the virtualenv with moto[server]).",
                python.display()
            );
        }
        let logs = tempfile::tempdir()?;
        let log = logs.path().join("moto.log");
        let mut child = Command::new(&python)
            .arg(repo_root().join("scripts/moto_server.py"))
            .args(["--host", "127.0.0.1", "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting moto")?;
        let line = wait_for_line(&mut child, "READY ", "moto", Duration::from_secs(60))?;
        let port: u16 = line.trim_start_matches("READY ").trim().parse().context("moto's READY line")?;
        Ok(Self {
            process: Process { child, name: "moto".into(), log },
            endpoint: format!("http://127.0.0.1:{port}"),
            _logs: logs,
        })
    }

    /// Credentials of `account_id`, by STS AssumeRole (moto maps them to that account).
    pub async fn credentials(&self, account_id: &str) -> anyhow::Result<Credentials> {
        let base = Credentials::new("testing", "testing", None, None, "estate-tests");
        let out = moto_client!(aws_sdk_sts, self, base, "us-east-1")
            .assume_role()
            .role_arn(format!("arn:aws:iam::{account_id}:role/EstateAgent"))
            .role_session_name("estate-tests")
            .send()
            .await
            .context("sts:AssumeRole")?;
        let c = out.credentials().context("AssumeRole returned no credentials")?;
        Ok(Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            None,
            "assumed",
        ))
    }

    /// STS as `credentials`.
    pub fn sts(&self, credentials: &Credentials) -> aws_sdk_sts::Client {
        moto_client!(aws_sdk_sts, self, credentials.clone(), "us-east-1")
    }

    pub fn s3(&self, credentials: &Credentials, region: &str) -> aws_sdk_s3::Client {
        moto_client!(aws_sdk_s3, self, credentials.clone(), region, force_path_style(true))
    }

    pub fn sqs(&self, credentials: &Credentials) -> aws_sdk_sqs::Client {
        moto_client!(aws_sdk_sqs, self, credentials.clone(), "us-east-1")
    }

    pub fn eventbridge(&self, credentials: &Credentials) -> aws_sdk_eventbridge::Client {
        moto_client!(aws_sdk_eventbridge, self, credentials.clone(), "us-east-1")
    }

    /// An SQS queue that an EventBridge rule fills with S3's CloudTrail events, as
    /// `deploy/cloudformation/member.yaml` sets up, with its event pattern; returns the queue URL.
    pub async fn event_queue(&self, credentials: &Credentials, name: &str) -> anyhow::Result<String> {
        let rule = format!("{name}-rule");
        self.queue_behind_rule(credentials, None, name, &rule, &deployed_event_pattern()?).await
    }

    /// A hub's central event bus `bus` in the account of `credentials`, with the rule of
    /// `deploy/cloudformation/hub.yaml` sending S3's CloudTrail events to a new queue `queue`;
    /// returns the queue's URL and the bus's ARN.
    pub async fn central_event_queue(
        &self,
        credentials: &Credentials,
        bus: &str,
        queue: &str,
    ) -> anyhow::Result<(String, String)> {
        let created = self.eventbridge(credentials).create_event_bus().name(bus).send().await?;
        let arn = created.event_bus_arn().context("no event bus ARN")?.to_owned();
        let url = self
            .queue_behind_rule(
                credentials,
                Some(bus),
                queue,
                &format!("{bus}-to-queue"),
                &template_event_pattern("hub.yaml", "CentralEventsRule")?,
            )
            .await?;
        Ok((url, arn))
    }

    /// A member's rule on its default bus that forwards S3's CloudTrail events to the central
    /// bus `bus_arn`, as `deploy/cloudformation/member.yaml` sets up with `CentralEventBusArn`.
    pub async fn forward_events(&self, credentials: &Credentials, bus_arn: &str) -> anyhow::Result<()> {
        let bridge = self.eventbridge(credentials);
        bridge.put_rule().name("estate-forward").event_pattern(deployed_event_pattern()?.to_string()).send().await?;
        bridge
            .put_targets()
            .rule("estate-forward")
            .targets(aws_sdk_eventbridge::types::Target::builder().id("central").arn(bus_arn).build()?)
            .send()
            .await?;
        Ok(())
    }

    /// Where an administrator's `eventbridge` sink delivers: a custom bus `bus` in the account
    /// of `credentials`, with a rule sending Estate's findings to a new SQS queue `queue`;
    /// returns the queue's URL.
    pub async fn findings_bus(&self, credentials: &Credentials, bus: &str, queue: &str) -> anyhow::Result<String> {
        self.eventbridge(credentials).create_event_bus().name(bus).send().await?;
        let pattern = serde_json::json!({"source": ["estate"], "detail-type": ["Estate Finding"]});
        self.queue_behind_rule(credentials, Some(bus), queue, &format!("{bus}-to-queue"), &pattern).await
    }

    /// A new SQS queue `queue`, filled by the EventBridge rule `rule` (on `bus`, or the
    /// default bus) with the events `pattern` matches; returns the queue's URL.
    async fn queue_behind_rule(
        &self,
        credentials: &Credentials,
        bus: Option<&str>,
        queue: &str,
        rule: &str,
        pattern: &serde_json::Value,
    ) -> anyhow::Result<String> {
        let sqs = self.sqs(credentials);
        let queue = sqs.create_queue().queue_name(queue).send().await?.queue_url.context("no queue URL")?;
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&queue)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await?
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn).cloned())
            .context("no queue ARN")?;
        let bridge = self.eventbridge(credentials);
        bridge
            .put_rule()
            .name(rule)
            .set_event_bus_name(bus.map(str::to_owned))
            .event_pattern(pattern.to_string())
            .send()
            .await?;
        bridge
            .put_targets()
            .rule(rule)
            .set_event_bus_name(bus.map(str::to_owned))
            .targets(aws_sdk_eventbridge::types::Target::builder().id("queue").arn(arn).build()?)
            .send()
            .await?;
        Ok(queue)
    }

    /// A new organization with every feature, managed by moto's default account (`testing`
    /// credentials); returns its client, as the management account, and its ID.
    pub async fn new_organization(&self) -> anyhow::Result<(aws_sdk_organizations::Client, String)> {
        let client = self.organizations(&Credentials::new("testing", "testing", None, None, "management"));
        let created = client
            .create_organization()
            .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
            .send()
            .await?;
        let id = created.organization().and_then(|o| o.id()).context("no organization ID")?.to_owned();
        Ok((client, id))
    }

    /// A new member account `name` (e-mail `name@example.com`) in the organization `client`
    /// manages; returns its ID.
    pub async fn new_account(client: &aws_sdk_organizations::Client, name: &str) -> anyhow::Result<String> {
        let created = client.create_account().email(format!("{name}@example.com")).account_name(name).send().await?;
        Ok(created.create_account_status().and_then(|s| s.account_id()).context("no new account ID")?.to_owned())
    }

    /// AWS Organizations as `credentials` (moto's default account is the management one).
    pub fn organizations(&self, credentials: &Credentials) -> aws_sdk_organizations::Client {
        moto_client!(aws_sdk_organizations, self, credentials.clone(), "us-east-1")
    }

    /// S3 Control at moto's plain address (moto routes it by path and account header).
    pub fn s3control(&self, credentials: &Credentials) -> aws_sdk_s3control::Client {
        #[derive(Debug)]
        struct Fixed(String);
        impl aws_sdk_s3control::config::endpoint::ResolveEndpoint for Fixed {
            fn resolve_endpoint<'a>(
                &'a self,
                _: &'a aws_sdk_s3control::config::endpoint::Params,
            ) -> aws_sdk_s3control::config::endpoint::EndpointFuture<'a> {
                aws_sdk_s3control::config::endpoint::EndpointFuture::ready(Ok(
                    aws_smithy_types::endpoint::Endpoint::builder().url(self.0.clone()).build(),
                ))
            }
        }
        let config = aws_sdk_s3control::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_resolver(Fixed(self.endpoint.clone()))
            .credentials_provider(credentials.clone())
            .build();
        aws_sdk_s3control::Client::from_conf(config)
    }
}

/// A running `estate-admin serve`.
#[derive(Debug)]
pub struct Admin {
    pub process: Process,
    pub grpc: String,
    pub http: String,
    pub data_dir: PathBuf,
    pub config: Option<PathBuf>,
    extra: Vec<String>,
    env: Vec<(String, String)>,
    grpc_port: u16,
    http_port: u16,
}

impl Admin {
    /// Starts the administrator. Without `config` it runs in `--insecure-dev` mode.
    pub fn start(data_dir: &Path, config: Option<&Path>) -> anyhow::Result<Self> {
        Self::start_with(data_dir, config, &[])
    }

    /// Starts the administrator with extra `serve` flags.
    pub fn start_with(data_dir: &Path, config: Option<&Path>, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_with_env(data_dir, config, extra, &[])
    }

    /// Starts the administrator with extra `serve` flags and environment variables.
    pub fn start_with_env(
        data_dir: &Path,
        config: Option<&Path>,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Self::start_on(data_dir, config, extra, env, free_port(), free_port())
    }

    /// Starts the administrator in `--insecure-dev` mode with the organization read from
    /// moto's AWS Organizations every second.
    pub fn start_with_organizations(data_dir: &Path, moto: &Moto) -> anyhow::Result<Self> {
        Self::start_with_env(
            data_dir,
            None,
            &["--organizations", "--organizations-interval", "1", "--aws-endpoint-url", &moto.endpoint],
            &[("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")],
        )
    }

    /// Sends SIGHUP (the administrator reloads its config).
    pub fn hangup(&self) -> anyhow::Result<()> {
        let status = Command::new("kill").args(["-HUP", &self.process.child.id().to_string()]).status()?;
        anyhow::ensure!(status.success(), "kill -HUP failed");
        Ok(())
    }

    fn start_on(
        data_dir: &Path,
        config: Option<&Path>,
        extra: Vec<String>,
        env: Vec<(String, String)>,
        grpc_port: u16,
        http_port: u16,
    ) -> anyhow::Result<Self> {
        let log = data_dir.with_extension(format!("admin-{}.log", Instant::now().elapsed().as_nanos()));
        let mut command = Command::new(binary("estate-admin"));
        command
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{grpc_port}")])
            .args(["--http-listen", &format!("127.0.0.1:{http_port}")])
            .arg("--data-dir")
            .arg(data_dir)
            .args(&extra)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdout(Stdio::piped())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(&log)?);
        match config {
            Some(path) => command.arg("--config").arg(path),
            None => command.arg("--insecure-dev"),
        };
        let mut child = command.spawn().context("starting estate-admin")?;
        let ready = wait_for_line(&mut child, "ESTATE_ADMIN_READY", "estate-admin", Duration::from_secs(60))
            .with_context(|| format!("log: {}", std::fs::read_to_string(&log).unwrap_or_default()))?;
        let scheme = if ready.ends_with("scheme=https") { "https" } else { "http" };
        Ok(Self {
            process: Process { child, name: "estate-admin".into(), log },
            grpc: format!("{scheme}://127.0.0.1:{grpc_port}"),
            http: format!("{scheme}://127.0.0.1:{http_port}"),
            data_dir: data_dir.to_owned(),
            config: config.map(Path::to_owned),
            extra,
            env,
            grpc_port,
            http_port,
        })
    }

    /// SIGKILL, then start again on the same ports and data directory.
    pub fn kill_and_restart(&mut self) -> anyhow::Result<()> {
        self.process.kill();
        let mut last = None;
        // The old listening sockets may linger for a moment.
        for _ in 0..50 {
            match Self::start_on(
                &self.data_dir,
                self.config.as_deref(),
                self.extra.clone(),
                self.env.clone(),
                self.grpc_port,
                self.http_port,
            ) {
                Ok(admin) => {
                    *self = admin;
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(last.expect("tried at least once"))
    }

    /// Runs `estatectl` against this administrator and returns its stdout as JSON.
    pub fn ctl_json(&self, token: Option<&str>, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let out = self.ctl(token, &[&["--output", "json"], args].concat())?;
        serde_json::from_str(&out).with_context(|| format!("estatectl printed no JSON: {out}"))
    }

    /// Runs `estatectl`; an error carries its stderr.
    pub fn ctl(&self, token: Option<&str>, args: &[&str]) -> anyhow::Result<String> {
        let mut command = Command::new(binary("estatectl"));
        command.args(["--endpoint", &self.grpc]);
        if let Some(token) = token {
            command.args(["--token", token]);
        }
        let out = command.args(args).output().context("running estatectl")?;
        if !out.status.success() {
            bail!("estatectl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?)
    }
}

/// A running `estate-agent run` for one account.
#[derive(Debug)]
pub struct Agent {
    pub process: Process,
}

impl Agent {
    pub fn start(
        admin: &Admin,
        moto: &Moto,
        credentials: &Credentials,
        token: Option<&str>,
        regions: &[&str],
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        Self::start_at(admin, &moto.endpoint, credentials, token, regions, extra)
    }

    /// [`Agent::start`] with the AWS calls going to `endpoint` (a proxy in front of moto).
    pub fn start_at(
        admin: &Admin,
        endpoint: &str,
        credentials: &Credentials,
        token: Option<&str>,
        regions: &[&str],
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = admin.data_dir.with_extension(format!("agent-{}-{n}.log", credentials.access_key_id()));
        let mut command = Command::new(binary("estate-agent"));
        command
            .arg("run")
            .args(["--admin", &admin.grpc])
            .args(["--regions", &regions.join(",")])
            .args(["--endpoint-url", endpoint])
            .args(extra)
            .env("AWS_ACCESS_KEY_ID", credentials.access_key_id())
            .env("AWS_SECRET_ACCESS_KEY", credentials.secret_access_key())
            .env("AWS_SESSION_TOKEN", credentials.session_token().unwrap_or_default())
            .env_remove("AWS_PROFILE")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            // Every acknowledged snapshot, for the tests that compare them with the store.
            .env("RUST_LOG", "info,estate_member_agent::outbox=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        if let Some(token) = token {
            command.args(["--token", token]);
        }
        let child = command.spawn().context("starting estate-agent")?;
        Ok(Self { process: Process { child, name: "estate-agent".into(), log } })
    }
}

/// A running `estate-agent hub`, as the default credentials of moto (its management account,
/// 123456789012) or the credentials given; restarted with the same arguments.
#[derive(Debug)]
pub struct Hub {
    pub process: Process,
    command: Vec<String>,
    credentials: (String, String, String),
    log_dir: PathBuf,
    started: usize,
}

impl Hub {
    /// `estate-agent hub --admin ... --regions ... --endpoint-url moto` with `args` (the
    /// accounts, a token, limits).
    pub fn start(admin: &Admin, moto: &Moto, regions: &[&str], args: &[&str]) -> anyhow::Result<Self> {
        let base = Credentials::new("testing", "testing", None, None, "hub");
        Self::start_as(admin, moto, &base, regions, args)
    }

    pub fn start_as(
        admin: &Admin,
        moto: &Moto,
        credentials: &Credentials,
        regions: &[&str],
        args: &[&str],
    ) -> anyhow::Result<Self> {
        Self::start_at(admin, &moto.endpoint, credentials, regions, args)
    }

    /// [`Hub::start_as`] with the AWS calls going to `endpoint` (a proxy in front of moto).
    pub fn start_at(
        admin: &Admin,
        endpoint: &str,
        credentials: &Credentials,
        regions: &[&str],
        args: &[&str],
    ) -> anyhow::Result<Self> {
        let mut command: Vec<String> =
            ["hub", "--admin", &admin.grpc, "--regions", &regions.join(",")].into_iter().map(String::from).collect();
        command.extend(["--endpoint-url".to_owned(), endpoint.to_owned()]);
        command.extend(args.iter().map(|a| a.to_string()));
        let credentials = (
            credentials.access_key_id().to_owned(),
            credentials.secret_access_key().to_owned(),
            credentials.session_token().unwrap_or_default().to_owned(),
        );
        let log_dir = admin.data_dir.with_extension("hub-logs");
        std::fs::create_dir_all(&log_dir)?;
        let process = Self::spawn(&command, &credentials, &log_dir, 0)?;
        Ok(Self { process, command, credentials, log_dir, started: 1 })
    }

    fn spawn(
        command: &[String],
        credentials: &(String, String, String),
        log_dir: &Path,
        n: usize,
    ) -> anyhow::Result<Process> {
        let log = log_dir.join(format!("hub-{n}.log"));
        let child = Command::new(binary("estate-agent"))
            .args(command)
            .env("AWS_ACCESS_KEY_ID", &credentials.0)
            .env("AWS_SECRET_ACCESS_KEY", &credentials.1)
            .env("AWS_SESSION_TOKEN", &credentials.2)
            .env_remove("AWS_PROFILE")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            // The benchmark may ask for more (ESTATE_BENCH_HUB_LOG, a RUST_LOG filter).
            .env(
                "RUST_LOG",
                std::env::var("ESTATE_BENCH_HUB_LOG")
                    .unwrap_or_else(|_| "info,estate_member_agent::outbox=debug".into()),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting estate-agent hub")?;
        Ok(Process { child, name: "estate-agent hub".into(), log })
    }

    /// SIGKILL, then the same command again (its log starts anew).
    pub fn kill_and_restart(&mut self) -> anyhow::Result<()> {
        self.process.kill();
        self.process = Self::spawn(&self.command, &self.credentials, &self.log_dir, self.started)?;
        self.started += 1;
        Ok(())
    }
}

/// The text of an administrator config: organization `organization_id` of `accounts`, an agent
/// for each of `agents` with the token `agent_token` gives it, and one read-only client.
pub fn config_text<A: AsRef<str>>(
    organization_id: &str,
    accounts: &[A],
    agents: &[A],
    agent_token: impl Fn(&str) -> String,
    client_token: &str,
) -> String {
    let list: Vec<String> = accounts.iter().map(|a| format!("\"{}\"", a.as_ref())).collect();
    let mut text =
        format!("version = 1\n[organization]\nid = \"{organization_id}\"\naccounts = [{}]\n", list.join(", "));
    for account in agents.iter().map(AsRef::as_ref) {
        text += &format!(
            "[[agents]]\nname = \"agent-{account}\"\naccount_id = \"{account}\"\ntoken = \"{}\"\n",
            agent_token(account)
        );
    }
    text + &format!("[[clients]]\nname = \"tests\"\nrole = \"read-only\"\ntoken = \"{client_token}\"\n")
}

/// The event pattern of the rule members deploy (`S3EventsRule` in
/// `deploy/cloudformation/member.yaml`), as JSON: the tests' events pass the same filter.
pub fn deployed_event_pattern() -> anyhow::Result<serde_json::Value> {
    template_event_pattern("member.yaml", "S3EventsRule")
}

/// The event pattern of the rule `rule` in `deploy/cloudformation/TEMPLATE`, as JSON.
pub fn template_event_pattern(template: &str, rule: &str) -> anyhow::Result<serde_json::Value> {
    let path = repo_root().join("deploy/cloudformation").join(template);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let template: serde_yaml::Value =
        serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let pattern = &template["Resources"][rule]["Properties"]["EventPattern"];
    anyhow::ensure!(pattern.is_mapping(), "{} has no {rule} event pattern", path.display());
    Ok(serde_json::to_value(pattern)?)
}

/// A bucket snapshot the administrator acknowledged to an agent, as the agent logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledged {
    pub seq: u64,
    pub bucket: String,
    /// The snapshot's tags, in the agent's words (`[("key", "value")]`).
    pub tags: String,
}

impl Acknowledged {
    /// Every acknowledgement in an agent's log (`RUST_LOG` as [`Agent::start_at`] sets it), in
    /// the order the agent received them.
    pub fn in_log(log: &str) -> Vec<Acknowledged> {
        log.lines()
            .filter(|line| line.contains("estate_member_agent::outbox") && line.contains(" acknowledged "))
            .filter_map(|line| {
                let field = |name: &str| {
                    let start = line.find(&format!(" {name}="))? + name.len() + 2;
                    let rest = &line[start..];
                    Some(if name == "tags" { rest } else { rest.split(' ').next()? })
                };
                Some(Acknowledged {
                    seq: field("seq")?.parse().ok()?,
                    bucket: field("bucket")?.to_owned(),
                    tags: field("tags")?.trim_end().to_owned(),
                })
            })
            .collect()
    }
}

/// Polls `check` until it returns `Some`, or fails after `timeout` with the last state.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    eventually_every(timeout, Duration::from_millis(200), what, check).await
}

/// [`eventually`], checking every `interval`: for long waits whose check is costly (each
/// one starts `estatectl`), so that polling does not take the CPU from what it waits for.
pub async fn eventually_every<T, F, Fut>(
    timeout: Duration,
    interval: Duration,
    what: &str,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}; last error: {last}");
        }
        tokio::time::sleep(interval).await;
    }
}

/// The peak resident memory of a running process, from `/proc/PID/status`.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
