"""Static checks of docker-compose.yml and the files it uses (no Docker, no network).

The checker functions return a list of problems; the negative-control tests run
them on deliberately broken in-memory configs to show they do find problems.
"""

from __future__ import annotations

import json
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from streams.settings import SETTINGS

REPO = Path(__file__).resolve().parents[3]
COMPOSE = REPO / "docker-compose.yml"
PROMETHEUS = REPO / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = REPO / "deploy" / "grafana"
KAFKA_DIR = REPO / "deploy" / "kafka"


# --- helpers -------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def documented_env_vars() -> set[str]:
    """CA_* names declared in streams/settings.py (its ``SETTINGS``)."""
    return {spec.env for spec in SETTINGS}


def env_vars_read_by_settings() -> set[str]:
    source = (REPO / "streams" / "settings.py").read_text()
    return set(re.findall(r"""["'](CA_[A-Z0-9_]+)["']""", source))


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["NAME=value", ...]
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def container_port(mapping: str | int) -> int:
    """'127.0.0.1:9090:9090' / '9090:9090' / 9090 -> 9090 (the container side)."""
    return int(str(mapping).split(":")[-1].split("/")[0])


def dockerfile_of(service: dict[str, Any], repo: Path) -> Path | None:
    build = service.get("build")
    if build is None:
        return None
    if isinstance(build, str):
        build = {"context": build}
    context = repo / build.get("context", ".")
    return context / build.get("dockerfile", "Dockerfile")


# --- checkers ------------------------------------------------------------------


def compose_problems(compose: dict[str, Any], repo: Path, documented: set[str]) -> list[str]:
    problems: list[str] = []
    services: dict[str, Any] = compose.get("services") or {}
    named_volumes = set((compose.get("volumes") or {}).keys())
    if not services:
        problems.append("no services")
    for name, svc in services.items():
        svc = svc or {}
        if "image" not in svc and "build" not in svc:
            problems.append(f"{name}: neither image nor build")
        build = svc.get("build")
        if build is not None:
            context = repo / (build if isinstance(build, str) else build.get("context", "."))
            if not context.is_dir():
                problems.append(f"{name}: build context {context} missing")
            dockerfile = dockerfile_of(svc, repo)
            if dockerfile is not None and not dockerfile.is_file():
                problems.append(f"{name}: dockerfile {dockerfile} missing")
            elif dockerfile is not None:
                problems += [
                    f"{name}: {p}" for p in dockerfile_problems(dockerfile, repo, documented)
                ]
        for volume in svc.get("volumes") or []:
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith((".", "/")):
                if not (repo / source).exists():
                    problems.append(f"{name}: volume source {source} missing")
            elif source not in named_volumes:
                problems.append(f"{name}: named volume {source!r} not declared")
        for var in environment(svc):
            if var.startswith("CA_") and var not in documented:
                problems.append(f"{name}: {var} is not documented in streams/settings.py")
        for dep in svc.get("depends_on") or []:
            if dep not in services:
                problems.append(f"{name}: depends on unknown service {dep}")
    return problems


def dockerfile_problems(dockerfile: Path, context: Path, documented: set[str]) -> list[str]:
    """COPY sources exist (globs excepted) and ENV CA_* names are documented."""
    problems: list[str] = []
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--") for w in words):
            for src in words[1:-1]:
                if not any(c in src for c in "*?[") and not (context / src).exists():
                    problems.append(f"{dockerfile.name}: COPY source {src} missing")
    for var in re.findall(r"\b(CA_[A-Z0-9_]+)=", dockerfile.read_text()):
        if var not in documented:
            problems.append(f"{dockerfile.name}: {var} is not documented")
    return problems


def prometheus_problems(prometheus: dict[str, Any], compose: dict[str, Any]) -> list[str]:
    """Every scrape target is a compose service; the worker's is on its web port."""
    problems: list[str] = []
    services = compose["services"]
    worker_port = environment(services["worker"]).get("CA_WEB_PORT")
    targets = [
        t
        for job in prometheus.get("scrape_configs") or []
        for sc in job.get("static_configs") or []
        for t in sc.get("targets") or []
    ]
    if not any(t.startswith("worker:") for t in targets):
        problems.append("no scrape target for the worker service")
    for target in targets:
        host, _, port = target.partition(":")
        if host not in services:
            problems.append(f"scrape target {target}: no service {host}")
        elif host == "worker" and port != worker_port:
            problems.append(f"scrape target {target}: worker's CA_WEB_PORT is {worker_port}")
    return problems


def grafana_problems(datasources: dict[str, Any], compose: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    services = compose["services"]
    prom = [d for d in datasources.get("datasources") or [] if d.get("type") == "prometheus"]
    if not prom:
        return ["no prometheus datasource"]
    for ds in prom:
        url = urlsplit(ds.get("url", ""))
        if url.hostname != "prometheus" or "prometheus" not in services:
            problems.append(
                f"datasource {ds.get('name')} points at {url.hostname}, not the prometheus service"
            )
            continue
        ports = {container_port(p) for p in services["prometheus"].get("ports") or []} or {9090}
        if url.port not in ports:
            problems.append(f"datasource port {url.port} is not prometheus's {sorted(ports)}")
    return problems


# --- the real files ----------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = load_yaml(COMPOSE)
    assert isinstance(data, dict)
    return data


def test_settings_doc_lists_every_variable_it_reads() -> None:
    documented = documented_env_vars()
    assert "CA_KAFKA_BOOTSTRAP" in documented
    assert documented == env_vars_read_by_settings()


def test_compose_has_no_problems(compose: dict[str, Any]) -> None:
    assert compose_problems(compose, REPO, documented_env_vars()) == []


def test_expected_services_and_worker_env(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"kafka", "clickhouse", "worker", "prometheus", "grafana"} <= set(services)
    env = environment(services["worker"])
    assert env["CA_KAFKA_BOOTSTRAP"] == "kafka:19092"
    assert env["CA_CLICKHOUSE_URL"] == "http://clickhouse:8123"
    assert env["CA_WEB_HOST"] == "0.0.0.0"  # noqa: S104 - inside the container
    assert env["CA_WEB_PORT"] == "6066"


def test_worker_bootstrap_is_an_advertised_kafka_listener(compose: dict[str, Any]) -> None:
    services = compose["services"]
    kafka_env = environment(services["kafka"])
    advertised = [urlsplit(u).netloc for u in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",")]
    assert environment(services["worker"])["CA_KAFKA_BOOTSTRAP"] in advertised
    assert "127.0.0.1:9092" in advertised  # the host's default CA_KAFKA_BOOTSTRAP
    assert 9092 in {container_port(p) for p in services["kafka"]["ports"]}


def test_worker_cmd_web_port_matches_env(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    dockerfile = dockerfile_of(worker, REPO)
    assert dockerfile is not None
    cmd = re.search(r"^CMD\s+(\[.*\])\s*$", dockerfile.read_text(), re.MULTILINE)
    assert cmd, "Dockerfile has no exec-form CMD"
    args = json.loads(cmd.group(1))
    assert args[:2] == ["campaign-analytics", "worker"]
    assert args[args.index("--web-port") + 1] == environment(worker)["CA_WEB_PORT"]


def test_kafka_image_matches_pom(compose: dict[str, Any]) -> None:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    pom = ET.parse(KAFKA_DIR / "pom.xml").getroot()  # noqa: S314 - our own file
    version = pom.findtext("m:properties/m:kafka.version", namespaces=ns)
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{version}"


def test_prometheus_scrapes_worker_web_port(compose: dict[str, Any]) -> None:
    assert prometheus_problems(load_yaml(PROMETHEUS), compose) == []


def test_grafana_datasource_points_at_prometheus(compose: dict[str, Any]) -> None:
    datasources = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    assert grafana_problems(datasources, compose) == []


def test_grafana_dashboards_are_mounted_and_use_known_metrics(compose: dict[str, Any]) -> None:
    provider = load_yaml(GRAFANA / "provisioning" / "dashboards" / "campaign-analytics.yml")
    path = provider["providers"][0]["options"]["path"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in compose["services"]["grafana"]["volumes"]}
    assert path in mounts, f"dashboard path {path} is not a grafana volume"
    dashboards = sorted((REPO / mounts[path]).glob("*.json"))
    assert dashboards

    uids = {
        d["uid"]
        for d in load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")[
            "datasources"
        ]
    }
    telemetry = (REPO / "streams" / "telemetry.py").read_text()
    known = set(re.findall(r'"(campaign_analytics_[a-z0-9_]+)"', telemetry))
    for file in dashboards:
        assert dashboard_problems(json.loads(file.read_text()), known, uids) == [], file.name


def dashboard_problems(dash: dict[str, Any], known: set[str], uids: set[str]) -> list[str]:
    """Panels (rows aside) on a known datasource, using only metrics the worker exports."""
    problems = []
    for panel in dash["panels"]:
        if panel.get("type") == "row":
            continue
        if panel.get("datasource", {}).get("uid") not in uids:
            problems.append(f"{panel['title']}: unknown datasource")
        for target in panel["targets"]:
            for metric in re.findall(r"campaign_analytics_[a-z0-9_]+", target["expr"]):
                base = re.sub(r"_(bucket|sum|count)$", "", metric)
                if base not in known:
                    problems.append(f"{panel['title']}: unknown {metric}")
    return problems


def dashboard_metrics(dash: dict[str, Any]) -> set[str]:
    return {re.sub(r"_(bucket|sum|count)$", "", m)
            for panel in dash["panels"] for target in panel.get("targets", [])
            for m in re.findall(r"campaign_analytics_[a-z0-9_]+", target["expr"])}


def test_dashboard_shows_every_metric_the_alerts_use() -> None:
    alerts = (REPO / "deploy" / "prometheus" / "alerts.yml").read_text()
    alerted = {re.sub(r"_(bucket|sum|count)$", "", m)
               for m in re.findall(r"campaign_analytics_[a-z0-9_]+", alerts)}
    dash = json.loads((GRAFANA / "dashboards" / "campaign-analytics.json").read_text())
    assert "campaign_analytics_stalled_commits_total" in alerted
    assert alerted - dashboard_metrics(dash) == set()
    assert "row" in {panel["type"] for panel in dash["panels"]}


def test_prometheus_loads_the_alert_rules(compose: dict[str, Any]) -> None:
    assert load_yaml(PROMETHEUS)["rule_files"] == ["alerts.yml"]  # next to prometheus.yml
    volumes = compose["services"]["prometheus"]["volumes"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in volumes}
    assert mounts["/etc/prometheus/alerts.yml"] == "./deploy/prometheus/alerts.yml"


def test_negative_control_dashboard_with_unknown_metric_and_datasource() -> None:
    dash = {"panels": [
        {"type": "row", "title": "a row"},
        {"type": "timeseries", "title": "fake", "datasource": {"uid": "elsewhere"},
         "targets": [{"expr": "rate(campaign_analytics_fake_metric_total[1m])"}]},
        {"type": "timeseries", "title": "fine", "datasource": {"uid": "prometheus"},
         "targets": [{"expr": "rate(campaign_analytics_sink_batch_seconds_bucket[1m])"}]},
    ]}
    known = {"campaign_analytics_sink_batch_seconds"}
    assert dashboard_problems(dash, known, {"prometheus"}) == [
        "fake: unknown datasource", "fake: unknown campaign_analytics_fake_metric_total"]


def test_kafka_script_and_template_agree() -> None:
    script = (KAFKA_DIR / "kafka.sh").read_text()
    placeholders = set(re.findall(r"@([A-Z_]+)@", (KAFKA_DIR / "server.properties.in").read_text()))
    assert placeholders == {"HOST", "PORT", "CONTROLLER_PORT", "DATA_DIR", "SECURE_LISTENER",
                            "SECRETS", "KEYSTORE_PASSWORD"}
    for name in placeholders:
        assert f"s|@{name}@|" in script, f"kafka.sh does not substitute @{name}@"
    subprocess.run(["bash", "-n", str(KAFKA_DIR / "kafka.sh")], check=True)
    fragment = (REPO / "Makefile.kafka").read_text()
    for target in ("kafka-jars", "kafka-up", "kafka-down", "kafka-status", "kafka-clean"):
        assert re.search(rf"^{target}:", fragment, re.MULTILINE), target


# --- negative controls: the checkers do find problems ---------------------------


def broken_compose() -> dict[str, Any]:
    return {
        "services": {
            "worker": {
                "build": {"context": ".", "dockerfile": "deploy/NoSuchDockerfile"},
                "environment": {"CA_WEB_PORT": "6066", "CA_KAFKA_BOOTSRAP": "kafka:19092"},
                "volumes": ["./deploy/no-such-dir:/x:ro", "undeclared:/data"],
                "depends_on": ["kafak"],
            },
            "noimage": {"environment": ["CA_LOG_LEVEL=info", "CA_MADE_UP=1"]},
        },
        "volumes": {},
    }


def test_negative_control_broken_compose_reports_problems() -> None:
    problems = "\n".join(compose_problems(broken_compose(), REPO, documented_env_vars()))
    assert "deploy/NoSuchDockerfile missing" in problems
    assert "volume source ./deploy/no-such-dir missing" in problems
    assert "named volume 'undeclared' not declared" in problems
    assert "CA_KAFKA_BOOTSRAP is not documented" in problems
    assert "CA_MADE_UP is not documented" in problems
    assert "noimage: neither image nor build" in problems
    assert "depends on unknown service kafak" in problems
    assert "CA_LOG_LEVEL" not in problems  # a documented one is fine


def test_negative_control_dockerfile_checks(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM x\nCOPY nothere ./\nCOPY README.m[d] ./\nENV CA_NOPE=1\n")
    problems = "\n".join(dockerfile_problems(dockerfile, tmp_path, documented_env_vars()))
    assert "COPY source nothere missing" in problems
    assert "README" not in problems  # globs may match nothing
    assert "CA_NOPE is not documented" in problems


def test_negative_control_prometheus_and_grafana(compose: dict[str, Any]) -> None:
    wrong_port = {"scrape_configs": [{"static_configs": [{"targets": ["worker:9999"]}]}]}
    assert any("CA_WEB_PORT is 6066" in p for p in prometheus_problems(wrong_port, compose))
    no_worker = {"scrape_configs": [{"static_configs": [{"targets": ["nosuch:80"]}]}]}
    assert len(prometheus_problems(no_worker, compose)) == 2
    wrong_host = {
        "datasources": [{"name": "P", "type": "prometheus", "url": "http://localhost:9090"}]
    }
    assert grafana_problems(wrong_host, compose)
    wrong_ds_port = {
        "datasources": [{"name": "P", "type": "prometheus", "url": "http://prometheus:9091"}]
    }
    assert grafana_problems(wrong_ds_port, compose)


def test_api_service_reads_the_same_kafka_and_clickhouse_as_the_worker(
        compose: dict[str, Any]) -> None:
    services = compose["services"]
    api, worker = environment(services["api"]), environment(services["worker"])
    assert api["CA_KAFKA_BOOTSTRAP"] == worker["CA_KAFKA_BOOTSTRAP"]
    assert api["CA_CLICKHOUSE_URL"] == worker["CA_CLICKHOUSE_URL"]
    command = services["api"]["command"]
    assert command[:2] == ["campaign-analytics", "api"]
    port = int(command[command.index("--port") + 1])
    assert port in {container_port(p) for p in services["api"]["ports"]}


# --- ClickHouse credentials (issue 19 item 2) ----------------------------------


def clickhouse_credential_problems(compose: dict[str, Any]) -> list[str]:
    """The ClickHouse server has a password, and every service that reaches it through
    CA_CLICKHOUSE_URL logs in with the same user and password, from their own settings
    (never in the URL, where logs and error messages would show them)."""
    problems: list[str] = []
    services: dict[str, Any] = compose.get("services") or {}
    server = environment(services.get("clickhouse") or {})
    password = server.get("CLICKHOUSE_PASSWORD", "")
    if server.get("CLICKHOUSE_SKIP_USER_SETUP") == "1" or not password:
        problems.append("clickhouse: no password (CLICKHOUSE_PASSWORD)")
    user = server.get("CLICKHOUSE_USER", "default")
    for name, svc in services.items():
        env = environment(svc or {})
        if not env.get("CA_CLICKHOUSE_URL"):
            continue
        parts = urlsplit(env["CA_CLICKHOUSE_URL"])
        if parts.username or parts.password:
            problems.append(f"{name}: credentials in CA_CLICKHOUSE_URL")
        if env.get("CA_CLICKHOUSE_USER", "default") != user:
            problems.append(f"{name}: CA_CLICKHOUSE_USER is not the server's user {user!r}")
        if "CA_CLICKHOUSE_PASSWORD_FILE" not in env and (
                env.get("CA_CLICKHOUSE_PASSWORD") != password):
            problems.append(f"{name}: CA_CLICKHOUSE_PASSWORD is not the server's password")
    return problems


def test_clickhouse_has_a_password_the_worker_and_api_use(compose: dict[str, Any]) -> None:
    assert clickhouse_credential_problems(compose) == []
    # the dev fallback is overridable from the shell or a .env file
    password = environment(compose["services"]["clickhouse"])["CLICKHOUSE_PASSWORD"]
    assert password.startswith("${CA_CLICKHOUSE_PASSWORD:-")
    assert "dev-only" in password
    for name in ("worker", "api"):
        assert environment(compose["services"][name])["CA_CLICKHOUSE_PASSWORD"] == password


def test_negative_control_clickhouse_credentials() -> None:
    broken = {"services": {
        "clickhouse": {"image": "clickhouse", "environment": {"CLICKHOUSE_SKIP_USER_SETUP": "1"}},
        "worker": {"environment": {"CA_CLICKHOUSE_URL": "http://u:secret@clickhouse:8123"}},
        "api": {"environment": {"CA_CLICKHOUSE_URL": "http://clickhouse:8123",
                                "CA_CLICKHOUSE_USER": "someone",
                                "CA_CLICKHOUSE_PASSWORD": "other"}},
    }}
    assert clickhouse_credential_problems(broken) == [
        "clickhouse: no password (CLICKHOUSE_PASSWORD)",
        "worker: credentials in CA_CLICKHOUSE_URL",
        "worker: CA_CLICKHOUSE_PASSWORD is not the server's password",
        "api: CA_CLICKHOUSE_USER is not the server's user 'default'",
        "api: CA_CLICKHOUSE_PASSWORD is not the server's password",
    ]
