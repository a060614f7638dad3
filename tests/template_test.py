"""Static checks for the SAM deployment (template.yaml, and template-sqs.yaml if present).

Run:  python3 -m pytest tests/template_test.py -q

The templates are parsed with cfn-lint's CloudFormation-aware YAML loader when it
is importable (PyYAML with constructors for the short-form tags otherwise), so
`!Ref X` arrives as {"Ref": "X"}, `!GetAtt A.B` as {"Fn::GetAtt": ["A", "B"]}, etc.

RENDITIONS_TEMPLATES (os.pathsep-separated paths) overrides which templates are
checked, e.g. to point the suite at a deliberately broken copy.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HAVE_CFNLINT = importlib.util.find_spec("cfnlint") is not None


def _template_paths() -> list[Path]:
    override = os.environ.get("RENDITIONS_TEMPLATES")
    if override:
        return [Path(p) for p in override.split(os.pathsep) if p]
    paths = [ROOT / "template.yaml"]
    if (ROOT / "template-sqs.yaml").exists():
        paths.append(ROOT / "template-sqs.yaml")
    return paths


TEMPLATE_PATHS = _template_paths()

# --------------------------------------------------------------------------- loading


def _load_with_pyyaml(path: Path) -> dict:
    import yaml

    class CfnLoader(yaml.SafeLoader):
        pass

    def construct(tag: str):
        name = "Ref" if tag == "Ref" else f"Fn::{tag}"

        def ctor(loader, node):
            if isinstance(node, yaml.ScalarNode):
                value = loader.construct_scalar(node)
                if tag == "GetAtt":
                    value = value.split(".", 1)
            elif isinstance(node, yaml.SequenceNode):
                value = loader.construct_sequence(node, deep=True)
            else:
                value = loader.construct_mapping(node, deep=True)
            if tag == "Condition":
                return {"Condition": value}
            return {name: value}

        return ctor

    for tag in ("Ref", "Sub", "GetAtt", "If", "Equals", "Not", "And", "Or", "Condition",
                "Join", "Select", "Split", "FindInMap", "ImportValue", "Base64", "Cidr",
                "GetAZs", "Transform", "Length", "ToJsonString"):
        CfnLoader.add_constructor(f"!{tag}", construct(tag))
    return yaml.load(path.read_text(), Loader=CfnLoader)  # noqa: S506 (SafeLoader subclass)


def load_template(path: Path) -> dict:
    if HAVE_CFNLINT:
        from cfnlint.decode import cfn_yaml

        # Round-trip through JSON to get plain dicts/lists (and deep copies).
        return json.loads(json.dumps(cfn_yaml.load(str(path))))
    return _load_with_pyyaml(path)


@pytest.fixture(params=TEMPLATE_PATHS, ids=lambda p: p.name)
def tpl_path(request) -> Path:
    return request.param


@pytest.fixture
def tpl(tpl_path) -> dict:
    return load_template(tpl_path)


# --------------------------------------------------------------------------- helpers


def resources(t: dict, rtype: str) -> dict[str, dict]:
    return {k: v for k, v in t["Resources"].items() if v.get("Type") == rtype}


def the_function(t: dict) -> tuple[str, dict]:
    fns = resources(t, "AWS::Serverless::Function")
    assert len(fns) == 1, f"expected exactly one AWS::Serverless::Function, found {sorted(fns)}"
    return next(iter(fns.items()))


def function_props(t: dict) -> dict:
    """The function's Properties with Globals.Function merged underneath (function wins)."""
    _, fn = the_function(t)
    merged = copy.deepcopy(t.get("Globals", {}).get("Function", {}))
    merged.update(fn.get("Properties", {}))
    return merged


def param_default(t: dict, name: str):
    assert name in t.get("Parameters", {}), f"missing parameter {name}"
    return t["Parameters"][name].get("Default")


def resolve_defaults(t: dict, value):
    """Resolve {"Ref": <parameter>} to the parameter default (recursively)."""
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in t.get("Parameters", {}):
        return param_default(t, value["Ref"])
    if isinstance(value, list):
        return [resolve_defaults(t, v) for v in value]
    return value


def walk(node, path=()):
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, path + (i,))


def policy_statements(node):
    """Every IAM-style statement (a mapping with Effect + Action/NotAction) under node."""
    for path, value in walk(node):
        if isinstance(value, dict) and "Effect" in value and ("Action" in value or "NotAction" in value):
            yield path, value


def as_list(v):
    return v if isinstance(v, list) else [v]


def references(node) -> set[str]:
    """Logical IDs referenced via Ref, GetAtt or ${...} in Sub strings anywhere under node."""
    refs: set[str] = set()
    for _, v in walk(node):
        if isinstance(v, dict):
            if isinstance(v.get("Ref"), str):
                refs.add(v["Ref"])
            ga = v.get("Fn::GetAtt")
            if isinstance(ga, list) and ga:
                refs.add(ga[0])
            elif isinstance(ga, str):
                refs.add(ga.split(".", 1)[0])
            sub = v.get("Fn::Sub")
            s = sub[0] if isinstance(sub, list) and sub else sub
            if isinstance(s, str):
                refs.update(m.split(".", 1)[0] for m in re.findall(r"\$\{([^!}][^}]*)\}", s))
    return refs


def sam_translate(t: dict, monkeypatch) -> dict:
    """Expand the SAM transform offline (samtranslator ships with cfn-lint)."""
    from samtranslator.translator.transform import transform

    class PolicyLoader:
        def load(self):
            return {
                "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
                "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
            }

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    t = copy.deepcopy(t)
    for fn in resources(t, "AWS::Serverless::Function").values():
        fn["Properties"]["CodeUri"] = "s3://bucket/key.zip"  # `.` is only valid before `sam build`
    return transform(t, {}, PolicyLoader())


# --------------------------------------------------------------------------- function


def test_function_build_metadata(tpl):
    name, fn = the_function(tpl)
    meta = fn.get("Metadata", {})
    assert meta.get("BuildMethod") == "rust-cargolambda", f"{name}: Metadata.BuildMethod must be rust-cargolambda"
    assert meta.get("BuildProperties", {}).get("Binary") == "renditions-lambda", (
        f"{name}: Metadata.BuildProperties.Binary must be renditions-lambda (the [[bin]] in Cargo.toml)"
    )


def test_function_runtime_handler_tracing(tpl):
    p = function_props(tpl)
    assert p.get("Runtime") == "provided.al2023", f"Runtime is {p.get('Runtime')!r}"
    assert p.get("Handler") == "bootstrap", f"Handler is {p.get('Handler')!r}"
    assert p.get("Tracing") == "Active", f"Tracing is {p.get('Tracing')!r}, expected Active"
    assert p.get("CodeUri") == ".", "CodeUri must be the crate root for rust-cargolambda"


def test_arm64_is_the_default_architecture(tpl):
    param = tpl["Parameters"].get("Architecture")
    assert param is not None, "missing Architecture parameter"
    assert param.get("Default") == "arm64", f"Architecture default is {param.get('Default')!r}"
    assert set(param.get("AllowedValues", [])) == {"arm64", "x86_64"}, param.get("AllowedValues")
    archs = function_props(tpl).get("Architectures")
    assert archs == [{"Ref": "Architecture"}], f"Architectures must be [!Ref Architecture], got {archs!r}"
    assert resolve_defaults(tpl, archs) == ["arm64"]


def test_memory_and_timeout(tpl):
    p = function_props(tpl)
    assert p.get("MemorySize") == {"Ref": "MemorySize"}
    assert param_default(tpl, "MemorySize") == 1769, "1769 MB = one full vCPU"
    assert p.get("Timeout") == 60, f"Timeout is {p.get('Timeout')!r}"


def test_json_logging_to_managed_log_group(tpl):
    p = function_props(tpl)
    lc = p.get("LoggingConfig", {})
    assert lc.get("LogFormat") == "JSON", f"LoggingConfig.LogFormat is {lc.get('LogFormat')!r}"
    lg_ref = lc.get("LogGroup")
    assert isinstance(lg_ref, dict) and "Ref" in lg_ref, "LoggingConfig.LogGroup must !Ref the log group resource"
    lg = tpl["Resources"].get(lg_ref["Ref"])
    assert lg and lg["Type"] == "AWS::Logs::LogGroup", f"{lg_ref['Ref']} is not an AWS::Logs::LogGroup"
    assert lg["Properties"].get("RetentionInDays") == {"Ref": "LogRetentionDays"}
    assert param_default(tpl, "LogRetentionDays") == 14
    # The log group name must be built from the same string as FunctionName (no !Ref to the function: cycle).
    fn_name = p.get("FunctionName", {}).get("Fn::Sub")
    assert fn_name, "the function needs an explicit FunctionName (!Sub ...) so the log group can be named without a cycle"
    assert lg["Properties"].get("LogGroupName") == {"Fn::Sub": f"/aws/lambda/{fn_name}"}, (
        f"LogGroupName {lg['Properties'].get('LogGroupName')!r} != /aws/lambda/{fn_name}"
    )


REQUIRED_ENV = {
    "DEST_BUCKET": None,
    "RENDITIONS": {"Ref": "Renditions"},
    "OUTPUT_FORMAT": {"Ref": "OutputFormat"},
    "JPEG_QUALITY": {"Ref": "JpegQuality"},
    "WATERMARK": "default",
    "REJECTION_REPORTS": "true",
    "METRICS_NAMESPACE": "Renditions",
    "CACHE_CONTROL": "public, max-age=31536000, immutable",
}


def test_environment(tpl):
    env = function_props(tpl).get("Environment", {}).get("Variables", {})
    for key, expected in REQUIRED_ENV.items():
        assert key in env, f"environment variable {key} missing"
        if expected is not None:
            assert env[key] == expected, f"{key} = {env[key]!r}, expected {expected!r}"
    assert param_default(tpl, "Renditions") == "large:1600,medium:800,thumb:320"
    assert param_default(tpl, "OutputFormat") == "auto"
    # avif is not offered: the SAM build does not enable the `avif` cargo feature (see
    # test_output_formats_are_all_built).
    assert set(tpl["Parameters"]["OutputFormat"]["AllowedValues"]) == {"auto", "jpeg", "png", "webp"}
    assert param_default(tpl, "JpegQuality") == 82


def test_traces_parameter_matches_the_function(tpl):
    """Traces offers exactly the TRACES values the function accepts (src/settings/telemetry.rs),
    defaults to X-Ray as before, and the collector layer is attached only when given."""
    param = tpl["Parameters"]["Traces"]
    assert param.get("Default") == "xray"
    assert set(param["AllowedValues"]) == {"xray", "otlp", "off"}
    source = (ROOT / "src/settings/telemetry.rs").read_text()
    for value in param["AllowedValues"]:
        assert f'"{value}" =>' in source or f'"{value}" |' in source, f"TRACES={value} is not parsed"
    props = function_props(tpl)
    assert props["Environment"]["Variables"]["TRACES"] == {"Ref": "Traces"}
    layers = props["Layers"]
    assert layers["Fn::If"][0] == "HasOtelCollectorLayer", layers
    assert layers["Fn::If"][1] == [{"Ref": "OtelCollectorLayerArn"}], layers
    assert param_default(tpl, "OtelCollectorLayerArn") == ""


def _cargo_features() -> tuple[set[str], set[str]]:
    """(features the default build enables, transitively; every feature Cargo.toml declares)."""
    import tomllib

    features = tomllib.loads((ROOT / "Cargo.toml").read_text()).get("features", {})
    on, todo = set(), list(features.get("default", []))
    while todo:
        f = todo.pop()
        if f in on or f.startswith("dep:") or "/" in f:
            continue
        on.add(f)
        todo += features.get(f, [])
    return on, set(features)


def test_output_formats_are_all_built(tpl):
    """Every OutputFormat the template offers must work in the binary `sam build` makes:
    rust-cargolambda builds the default features (plus BuildProperties.Features, if any), and a
    format behind a feature that is not built (avif) is an init error on every cold start."""
    _, fn = the_function(tpl)
    built, declared = _cargo_features()
    extra = fn.get("Metadata", {}).get("BuildProperties", {}).get("Features", "")
    built |= set(str(extra).replace(",", " ").split())
    for fmt in tpl["Parameters"]["OutputFormat"]["AllowedValues"]:
        if fmt in declared:  # a format that is also a cargo feature (today: avif)
            assert fmt in built, (
                f"OutputFormat offers {fmt!r}, but the SAM build does not enable the `{fmt}` cargo feature "
                f"(built: {sorted(built)}): every cold start would fail with an init error"
            )
    assert "avif" in declared, "Cargo.toml no longer declares an `avif` feature: revisit this test"
    assert "avif" not in built, "the default build now has `avif`: offer it in OutputFormat again"
    assert "avif" not in tpl["Parameters"]["OutputFormat"]["AllowedValues"]


# --------------------------------------------------------------------------- IAM


def _check_statements(where: str, node):
    found = 0
    for path, st in policy_statements(node):
        found += 1
        loc = f"{where}:{'/'.join(map(str, path))}"
        assert "NotAction" not in st, f"{loc}: NotAction grants everything else"
        actions = [a for a in as_list(st.get("Action")) if isinstance(a, str)]
        for a in actions:
            assert a != "*", f"{loc}: Action '*'"
            assert not a.endswith(":*"), f"{loc}: wildcard action {a!r}"
        s3_actions = [a for a in actions if a.lower().startswith("s3:")]
        if s3_actions and st.get("Effect") == "Allow":
            for a in s3_actions:
                assert "*" not in a, f"{loc}: wildcard S3 action {a!r}"
            assert "NotResource" not in st, f"{loc}: S3 statement with NotResource"
            for r in as_list(st.get("Resource")):
                assert r != "*", f"{loc}: S3 actions {s3_actions} on Resource '*'"
                assert r not in ("arn:aws:s3:::*", "arn:aws:s3:::*/*"), f"{loc}: S3 actions on every bucket"
    return found


def test_no_wildcard_actions_or_s3_star_resources(tpl):
    assert _check_statements("template", tpl) > 0, "no policy statements found at all"


def test_no_wildcards_after_sam_expansion(tpl, monkeypatch):
    """Policy templates (S3ReadPolicy, S3CrudPolicy, ...) only become statements after the transform."""
    if not HAVE_CFNLINT:
        pytest.skip("samtranslator (installed with cfn-lint) not importable")
    out = sam_translate(tpl, monkeypatch)
    _check_statements("translated", out)
    roles = resources(out, "AWS::IAM::Role")
    for name, role in roles.items():
        managed = role["Properties"].get("ManagedPolicyArns", [])
        extra = [m for m in managed if not str(m).endswith(("/AWSLambdaBasicExecutionRole", "/AWSXrayWriteOnlyAccess"))]
        assert not extra, f"{name}: unexpected managed policies {extra}"


def test_function_policies_are_least_privilege(tpl):
    p = function_props(tpl)
    policies = as_list(p.get("Policies", []))
    buckets = set(resources(tpl, "AWS::S3::Bucket"))
    s3_actions: set[str] = set()
    for pol in policies:
        assert not isinstance(pol, str), f"managed/named policy {pol!r} attached to the function"
        # SAM policy templates: BucketName must not !Ref a bucket of this stack (E3004 cycle).
        for tmpl_name, args in (pol.items() if isinstance(pol, dict) else []):
            if tmpl_name.startswith("S3") and tmpl_name.endswith("Policy"):
                bad = references(args) & buckets
                assert not bad, f"{tmpl_name} references bucket resource(s) {bad}: dependency cycle (E3004)"
                assert tmpl_name in {"S3ReadPolicy", "S3WritePolicy"}, f"{tmpl_name} is broader than read/write"
        for _, st in policy_statements(pol):
            acts = {a for a in as_list(st["Action"]) if isinstance(a, str) and a.startswith("s3:")}
            if acts:
                bad = references(st.get("Resource")) & buckets
                assert not bad, f"S3 statement Resource references bucket resource(s) {bad}: cycle (E3004)"
                if acts == {"s3:ListBucket"}:
                    # Bucket-level, only so missing keys answer 404 (HEAD checks): the two
                    # buckets of this stack, nothing else.
                    assert len(as_list(st["Resource"])) == 2, st["Resource"]
                    text = json.dumps(st["Resource"])
                    assert "/*" not in text and "-source" in text and "-renditions" in text, text
                else:
                    assert all(str(r).endswith("/*") or "/*" in json.dumps(r) for r in as_list(st["Resource"])), (
                        f"S3 statement must be limited to objects (bucket/*): {st['Resource']!r}"
                    )
            s3_actions |= acts
    if s3_actions:  # explicit statements
        # s3:DeleteObject only with OnSourceDelete=delete (test_delete_object_only_when_deleting).
        assert s3_actions <= {
            "s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"
        }, sorted(s3_actions)
        fn_name, _ = the_function(tpl)
        for mode, extra in (("keep", set()), ("delete", {"s3:DeleteObject"})):
            deployed = {
                a
                for _, st in policy_statements(deployed_props(tpl, fn_name, OnSourceDelete=mode).get("Policies", []))
                for a in as_list(st["Action"])
                if isinstance(a, str) and a.startswith("s3:")
            }
            assert deployed == {"s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:ListBucket"} | extra, (
                mode,
                sorted(deployed),
            )


# --------------------------------------------------------------------------- failure handling


def test_on_failure_destination(tpl):
    eic = function_props(tpl).get("EventInvokeConfig")
    assert eic, "EventInvokeConfig missing"
    assert eic.get("MaximumRetryAttempts") == 2, f"MaximumRetryAttempts is {eic.get('MaximumRetryAttempts')!r}"
    assert eic.get("MaximumEventAgeInSeconds") == 3600, f"MaximumEventAgeInSeconds is {eic.get('MaximumEventAgeInSeconds')!r}"
    on_failure = eic.get("DestinationConfig", {}).get("OnFailure")
    assert on_failure, "EventInvokeConfig.DestinationConfig.OnFailure missing"
    assert on_failure.get("Type") == "SQS"
    dest = on_failure.get("Destination", {}).get("Fn::GetAtt")
    assert dest and dest[1] == "Arn", f"OnFailure.Destination must be !GetAtt <queue>.Arn, got {on_failure!r}"
    dlq = tpl["Resources"].get(dest[0])
    assert dlq and dlq["Type"] == "AWS::SQS::Queue", f"{dest[0]} is not an SQS queue"
    assert dlq["Properties"].get("MessageRetentionPeriod") == 14 * 24 * 3600
    assert dlq["Properties"].get("SqsManagedSseEnabled") is True
    assert any(v.get("Value") == {"Ref": dest[0]} for v in tpl["Outputs"].values()), "no output with the DLQ URL"


# --------------------------------------------------------------------------- buckets


def test_buckets_private_and_encrypted(tpl):
    buckets = resources(tpl, "AWS::S3::Bucket")
    assert len(buckets) >= 2, f"expected source + destination buckets, found {sorted(buckets)}"
    for name, b in buckets.items():
        props = b.get("Properties", {})
        pab = props.get("PublicAccessBlockConfiguration", {})
        for key in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"):
            assert pab.get(key) is True, f"{name}: PublicAccessBlockConfiguration.{key} is {pab.get(key)!r}"
        rules = props.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
        algos = [r.get("ServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for r in rules]
        assert algos and all(a in ("AES256", "aws:kms", "aws:kms:dsse") for a in algos), f"{name}: encryption {algos}"
        owners = [r.get("ObjectOwnership") for r in props.get("OwnershipControls", {}).get("Rules", [])]
        assert owners == ["BucketOwnerEnforced"], f"{name}: OwnershipControls {owners}"
        bucket_name = props.get("BucketName")
        assert not isinstance(bucket_name, str), f"{name}: hard-coded BucketName {bucket_name!r} (use the parameters)"


# --------------------------------------------------------------------------- ingestion


def _single_template(tpl) -> bool:
    return "Ingestion" in tpl.get("Parameters", {})


def test_ingestion_parameter(tpl, tpl_path):
    if not _single_template(tpl):
        assert (ROOT / "template-sqs.yaml").exists(), "no Ingestion parameter and no template-sqs.yaml"
        return
    p = tpl["Parameters"]["Ingestion"]
    assert p.get("Default") == "direct"
    assert set(p.get("AllowedValues", [])) == {"direct", "sqs"}


def test_direct_s3_notification(tpl):
    fn_name, _ = the_function(tpl)
    src = [b for b in resources(tpl, "AWS::S3::Bucket").values() if "NotificationConfiguration" in b["Properties"]]
    assert len(src) == 1, "exactly one bucket (the source) must have a NotificationConfiguration"
    text = json.dumps(src[0]["Properties"]["NotificationConfiguration"])
    if "LambdaConfigurations" not in text:
        # Pure SAM variant: the S3 event lives on the function.
        events = function_props(tpl).get("Events", {})
        assert any(e.get("Type") == "S3" for e in events.values()), "no S3 -> Lambda wiring"
        return
    assert '"s3:ObjectCreated:*"' in text
    assert json.dumps({"Fn::GetAtt": [fn_name, "Arn"]}) in text, "LambdaConfigurations must target the function"
    assert '"HasKeyFilter"' in text, "the key filter must be conditional (no empty Filter emitted)"
    perms = [
        r for r in resources(tpl, "AWS::Lambda::Permission").values()
        if r["Properties"].get("Principal") == "s3.amazonaws.com"
    ]
    assert perms, "no lambda:InvokeFunction permission for s3.amazonaws.com"
    for perm in perms:
        assert perm["Properties"].get("SourceAccount") == {"Ref": "AWS::AccountId"}
        assert "SourceArn" in perm["Properties"]


def test_sqs_ingestion(tpl):
    fn_name, _ = the_function(tpl)
    esms = resources(tpl, "AWS::Lambda::EventSourceMapping")
    sam_sqs = {k: e["Properties"] for k, e in function_props(tpl).get("Events", {}).items() if e.get("Type") == "SQS"}
    if not esms and not sam_sqs:
        pytest.skip("direct-only template (SQS variant lives in template-sqs.yaml)")
    mappings = [e["Properties"] for e in esms.values()] + list(sam_sqs.values())
    assert len(mappings) == 1
    m = mappings[0]
    if _single_template(tpl):
        assert all(e.get("Condition") == "IsSqs" for e in esms.values()), "event source mapping must be Condition: IsSqs"
    assert m.get("BatchSize") == 10, f"BatchSize is {m.get('BatchSize')!r}"
    assert m.get("MaximumBatchingWindowInSeconds") == 2, f"batching window is {m.get('MaximumBatchingWindowInSeconds')!r}"
    assert m.get("FunctionResponseTypes") == ["ReportBatchItemFailures"], (
        "FunctionResponseTypes must be [ReportBatchItemFailures] (partial batch responses)"
    )
    queue_id = (m.get("EventSourceArn") or m.get("Queue"))["Fn::GetAtt"][0]
    q = tpl["Resources"][queue_id]["Properties"]
    timeout = function_props(tpl)["Timeout"]
    assert q["VisibilityTimeout"] >= 6 * timeout, f"VisibilityTimeout {q['VisibilityTimeout']} < 6 x {timeout}"
    assert q["RedrivePolicy"]["maxReceiveCount"] == 5
    assert q["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0] in resources(tpl, "AWS::SQS::Queue")
    # S3 may send to the queue only from this account and the source bucket.
    qps = [r for r in resources(tpl, "AWS::SQS::QueuePolicy").values() if {"Ref": queue_id} in r["Properties"]["Queues"]]
    assert qps, f"no AWS::SQS::QueuePolicy for {queue_id}"
    stmts = [st for _, st in policy_statements(qps[0]["Properties"]["PolicyDocument"])]
    assert any(
        st["Principal"] == {"Service": "s3.amazonaws.com"}
        and "aws:SourceArn" in json.dumps(st.get("Condition"))
        and "aws:SourceAccount" in json.dumps(st.get("Condition"))
        for st in stmts
    ), "queue policy must restrict s3.amazonaws.com with aws:SourceArn and aws:SourceAccount"
    assert not (references(qps[0]) & set(resources(tpl, "AWS::S3::Bucket"))), "queue policy must not !Ref the bucket (cycle)"
    # The function role can poll the queue.
    pol = json.dumps(function_props(tpl).get("Policies", []))
    assert "SQSPollerPolicy" in pol and queue_id in pol, "function needs SQSPollerPolicy on the ingest queue"
    assert any(o.get("Value") == {"Ref": queue_id} for o in tpl["Outputs"].values()), "no QueueUrl output"


def test_outputs(tpl):
    outs = tpl.get("Outputs", {})
    for key in ("SourceBucket", "DestinationBucket", "FunctionArn", "FunctionName", "DeadLetterQueueUrl",
                "BackfillBatchRoleArn", "BackfillOpsBucket", "BackfillCommand"):
        assert key in outs, f"output {key} missing"


# --------------------------------------------------------------------------- cfn-lint


def test_cfn_lint_clean(tpl_path):
    if not HAVE_CFNLINT:
        pytest.skip("cfn-lint is not importable in this interpreter (pip install cfn-lint) - lint check skipped")
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from cfnlint.runner import main; sys.exit(main())", str(tpl_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, f"cfn-lint {tpl_path.name} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
    assert proc.stdout.strip() == "", f"cfn-lint printed findings:\n{proc.stdout}"


# --------------------------------------------------------------------------- parameters, conditions

_NO_VALUE = object()


def evaluate(t: dict, node, params: dict):
    """Resolve Ref (parameters, with their defaults unless given), Fn::If and the condition
    functions the way CloudFormation does, so tests can ask what a deploy with `params`
    creates. AWS::NoValue inside a mapping or list removes the entry."""
    values = {k: v.get("Default") for k, v in t.get("Parameters", {}).items()}
    values.update(params)

    def cond(name):
        return ev(t["Conditions"][name])

    def ev(n):
        if isinstance(n, dict) and len(n) == 1:
            (k, v), = n.items()
            if k == "Ref":
                if v == "AWS::NoValue":
                    return _NO_VALUE
                return values[v] if v in values else n
            if k == "Fn::If":
                return ev(v[1] if cond(v[0]) else v[2])
            if k == "Fn::Equals":
                a, b = (ev(x) for x in v)
                return str(a) == str(b)  # CloudFormation compares the string forms
            if k == "Fn::Not":
                return not ev(v[0])
            if k == "Fn::And":
                return all(ev(x) for x in v)
            if k == "Fn::Or":
                return any(ev(x) for x in v)
            if k == "Condition":
                return cond(v)
        if isinstance(n, dict):
            out = {k: ev(v) for k, v in n.items()}
            return {k: v for k, v in out.items() if v is not _NO_VALUE}
        if isinstance(n, list):
            return [x for x in (ev(v) for v in n) if x is not _NO_VALUE]
        return n

    return ev(node)


def deployed_props(t: dict, logical_id: str, **params) -> dict:
    """A resource's Properties as a deploy with `params` (other parameters: defaults) sees them."""
    return evaluate(t, t["Resources"][logical_id].get("Properties", {}), params)


def test_buckets_versioned_with_bounded_history(tpl):
    days = param_default(tpl, "NoncurrentVersionDays")
    assert isinstance(days, int) and 1 <= days <= 365, f"NoncurrentVersionDays default {days!r}"
    for name in resources(tpl, "AWS::S3::Bucket"):
        props = deployed_props(tpl, name, NoncurrentVersionDays=7)
        assert props.get("VersioningConfiguration") == {"Status": "Enabled"}, f"{name}: not versioned"
        rules = [r for r in props.get("LifecycleConfiguration", {}).get("Rules", []) if r.get("Status") == "Enabled"]
        expiring = [r for r in rules if r.get("NoncurrentVersionExpiration", {}).get("NoncurrentDays") == 7]
        assert expiring, f"{name}: no enabled lifecycle rule expiring noncurrent versions after NoncurrentVersionDays"
        for r in expiring:
            # A prefix or tag filter would leave the rest of the bucket growing forever.
            assert not ({"Prefix", "Filter", "TagFilters"} & set(r)), f"{name}: rule {r.get('Id')} is filtered"
        assert any(r.get("ExpiredObjectDeleteMarker") is True for r in rules), f"{name}: delete markers pile up"
        assert any("AbortIncompleteMultipartUpload" in r for r in rules), f"{name}: incomplete uploads are kept"


def test_queues_encrypted(tpl):
    queues = resources(tpl, "AWS::SQS::Queue")
    assert queues, "no SQS queues"
    for name, q in queues.items():
        p = q.get("Properties", {})
        assert p.get("SqsManagedSseEnabled") is True or p.get("KmsMasterKeyId"), f"{name}: not encrypted at rest"


def test_reserved_concurrency_parameter(tpl):
    param = tpl["Parameters"].get("ReservedConcurrency")
    assert param and param["Type"] == "Number", "missing Number parameter ReservedConcurrency"
    assert isinstance(param.get("Default"), int) and param["Default"] > 0, "the default must be a cap (> 0)"
    assert param.get("MinValue") == 0, "0 (= no reservation) must be allowed"
    fn_name, _ = the_function(tpl)
    capped = deployed_props(tpl, fn_name)
    assert capped.get("ReservedConcurrentExecutions") == param["Default"], capped.get("ReservedConcurrentExecutions")
    assert deployed_props(tpl, fn_name, ReservedConcurrency=25)["ReservedConcurrentExecutions"] == 25
    assert "ReservedConcurrentExecutions" not in deployed_props(tpl, fn_name, ReservedConcurrency=0), (
        "ReservedConcurrency=0 must leave ReservedConcurrentExecutions unset (0 would stop the function)"
    )
    # sqs: the poller's MaximumConcurrency follows the cap (throttled batches would count as
    # receives and push good messages into the DLQ).
    for esm in resources(tpl, "AWS::Lambda::EventSourceMapping"):
        assert deployed_props(tpl, esm, ReservedConcurrency=25).get("ScalingConfig") == {"MaximumConcurrency": 25}
        assert "ScalingConfig" not in deployed_props(tpl, esm, ReservedConcurrency=0)


def test_reserved_concurrency_survives_sam_expansion(tpl, monkeypatch):
    if not HAVE_CFNLINT:
        pytest.skip("samtranslator (installed with cfn-lint) not importable")
    out = sam_translate(tpl, monkeypatch)
    fns = resources(out, "AWS::Lambda::Function")
    assert len(fns) == 1
    props = next(iter(fns.values()))["Properties"]
    assert evaluate(tpl, props.get("ReservedConcurrentExecutions"), {"ReservedConcurrency": 30}) == 30


def test_optional_access_logs_and_kms_keys_off_by_default(tpl):
    fn_name, _ = the_function(tpl)
    log_groups = list(resources(tpl, "AWS::Logs::LogGroup"))
    for name in ("AccessLogBucketName", "LogGroupKmsKeyArn", "EnvironmentKmsKeyArn"):
        assert param_default(tpl, name) == "", f"{name} must default to empty (off)"
    for b in resources(tpl, "AWS::S3::Bucket"):
        assert "LoggingConfiguration" not in deployed_props(tpl, b), f"{b}: access logging on by default"
    for lg in log_groups:
        assert "KmsKeyId" not in deployed_props(tpl, lg)
    assert "KmsKeyArn" not in deployed_props(tpl, fn_name)


def test_optional_access_logs_and_kms_keys_when_set(tpl):
    fn_name, _ = the_function(tpl)
    key = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    prefixes = set()
    for b in resources(tpl, "AWS::S3::Bucket"):
        lc = deployed_props(tpl, b, AccessLogBucketName="my-logs").get("LoggingConfiguration")
        assert lc and lc.get("DestinationBucketName") == "my-logs", f"{b}: {lc!r}"
        prefixes.add(json.dumps(lc.get("LogFilePrefix")))
    assert len(prefixes) == len(resources(tpl, "AWS::S3::Bucket")), "the buckets' access logs must not share a prefix"
    for lg in resources(tpl, "AWS::Logs::LogGroup"):
        assert deployed_props(tpl, lg, LogGroupKmsKeyArn=key).get("KmsKeyId") == key
    assert deployed_props(tpl, fn_name, EnvironmentKmsKeyArn=key).get("KmsKeyArn") == key
    for name in ("LogGroupKmsKeyArn", "EnvironmentKmsKeyArn"):
        pattern = tpl["Parameters"][name]["AllowedPattern"]
        assert re.fullmatch(pattern, key) and re.fullmatch(pattern, ""), f"{name}: AllowedPattern {pattern!r}"
        assert not re.fullmatch(pattern, "alias/aws/lambda"), f"{name} must be a key ARN"


# --------------------------------------------------------------------------- checkov


def _checkov_skips(t: dict):
    for name, r in t["Resources"].items():
        for skip in r.get("Metadata", {}).get("checkov", {}).get("skip", []):
            yield name, skip


def test_every_checkov_skip_is_explained(tpl):
    skips = list(_checkov_skips(tpl))
    assert skips, "no checkov skips found (were they moved out of Metadata?)"
    for name, skip in skips:
        assert re.fullmatch(r"CKV2?_AWS_\d+", str(skip.get("id", ""))), f"{name}: skip without a check id: {skip!r}"
        assert len(str(skip.get("comment", "")).split()) >= 12, f"{name}: {skip['id']} skipped without a reason"


def _checkov() -> str | None:
    import shutil

    return os.environ.get("CHECKOV") or shutil.which("checkov")


def test_checkov_clean(tpl_path):
    """`make lint` runs the same scan; here it runs when checkov is found (env CHECKOV or PATH)."""
    exe = _checkov()
    if not exe or not os.access(exe, os.X_OK):
        pytest.skip("checkov not found (make py-deps installs it; CHECKOV=path/to/checkov)")
    proc = subprocess.run(
        [exe, "-f", str(tpl_path), "--framework", "cloudformation", "--skip-download", "-o", "json"],
        capture_output=True, text=True, cwd=ROOT,
    )
    report = json.loads(proc.stdout)
    summary = report["summary"]
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0 and proc.returncode == 0, f"checkov failed checks: {failed}"
    assert summary["parsing_errors"] == 0
    skipped = {(c["check_id"], c["resource"].split(".")[-1]) for c in report["results"]["skipped_checks"]}
    declared = {(s["id"], name) for name, s in _checkov_skips(load_template(tpl_path))}
    assert skipped == declared, f"skips checkov applied {sorted(skipped)} != skips in the template {sorted(declared)}"


# --------------------------------------------------------------------------- OnSourceDelete

PSEUDO = {"AWS::StackName": "stk", "AWS::AccountId": "123456789012", "AWS::Partition": "aws", "AWS::Region": "eu-west-1"}


def render(t: dict, node, params: dict | None = None):
    """evaluate(), then Fn::Sub strings filled in (pseudo parameters from PSEUDO, attributes
    as "<Resource.Attr>"), so a test can compare the string a deploy with `params` sees."""

    def r(v):
        if isinstance(v, dict) and len(v) == 1:
            (k, x), = v.items()
            if k == "Fn::Sub":
                text, variables = (x, {}) if isinstance(x, str) else (x[0], {n: r(e) for n, e in x[1].items()})

                def fill(m):
                    name = m.group(1)
                    if name in variables:
                        return variables[name]
                    return PSEUDO.get(name, f"<{name}>")

                return re.sub(r"\$\{([^!}][^}]*)\}", fill, text)
            if k == "Ref" and x in PSEUDO:
                return PSEUDO[x]
            if k == "Fn::GetAtt":
                return "<{}.{}>".format(*(x if isinstance(x, list) else x.split(".", 1)))
        if isinstance(v, dict):
            return {k: r(x) for k, x in v.items()}
        if isinstance(v, list):
            return [r(x) for x in v]
        return v

    return r(evaluate(t, node, params or {}))


def _source_bucket_id(t: dict) -> str:
    src = [k for k, b in resources(t, "AWS::S3::Bucket").items() if "NotificationConfiguration" in b["Properties"]]
    assert len(src) == 1, src
    return src[0]


def _destination_bucket_id(t: dict) -> str:
    dst = [k for k in resources(t, "AWS::S3::Bucket") if k != _source_bucket_id(t)]
    assert len(dst) == 1, dst
    return dst[0]


def bucket_name(t: dict, logical_id: str, params: dict | None = None) -> str:
    return render(t, t["Resources"][logical_id]["Properties"]["BucketName"], params)


# Explicit names and generated ones ("stk-123456789012-source" / "-renditions").
NAME_CASES = [{}, {"SourceBucketName": "my-uploads", "DestinationBucketName": "my-renditions"}]


def test_on_source_delete_parameter_and_env(tpl):
    if not _single_template(tpl):
        pytest.skip("OnSourceDelete lives in the single template")
    param = tpl["Parameters"].get("OnSourceDelete")
    assert param and param["Type"] == "String", "missing String parameter OnSourceDelete"
    assert param.get("Default") == "keep", "deleting renditions must be opt-in"
    assert param.get("AllowedValues") == ["keep", "delete"], param.get("AllowedValues")
    assert tpl["Conditions"]["DeletesRenditions"] == {"Fn::Equals": [{"Ref": "OnSourceDelete"}, "delete"]}
    env = function_props(tpl)["Environment"]["Variables"]
    assert env.get("ON_SOURCE_DELETE") == {"Ref": "OnSourceDelete"}, env.get("ON_SOURCE_DELETE")


def test_on_source_delete_values_are_parsed(tpl):
    """Once the function reads ON_SOURCE_DELETE, it must accept every value the template can pass."""
    if not _single_template(tpl):
        pytest.skip("OnSourceDelete lives in the single template")
    param = tpl["Parameters"]["OnSourceDelete"]
    sources = {p: p.read_text() for p in (ROOT / "src").rglob("*.rs")}
    readers = [p for p, text in sources.items() if "ON_SOURCE_DELETE" in text]
    if not readers:
        pytest.skip("the function does not read ON_SOURCE_DELETE yet (src/)")
    code = "".join(sources.values())
    for value in param["AllowedValues"]:
        assert f'"{value}"' in code, f"ON_SOURCE_DELETE={value} is not parsed anywhere in src/"


@pytest.mark.parametrize("ingestion,key", [("direct", "LambdaConfigurations"), ("sqs", "QueueConfigurations")])
@pytest.mark.parametrize("filters", [{}, {"KeyPrefix": "uploads/"}, {"KeySuffix": ".jpg"},
                                     {"KeyPrefix": "uploads/", "KeySuffix": ".jpg"}])
def test_object_removed_notification(tpl, ingestion, key, filters):
    """OnSourceDelete=delete: ObjectRemoved:* goes to the same target as ObjectCreated:*, with
    the same key filters, in both ingestion modes; keep: ObjectCreated:* only."""
    if not _single_template(tpl):
        pytest.skip("Ingestion/OnSourceDelete live in the single template")
    src = _source_bucket_id(tpl)
    other = "QueueConfigurations" if key == "LambdaConfigurations" else "LambdaConfigurations"
    target = "Function" if key == "LambdaConfigurations" else "Queue"
    for mode in ("keep", "delete"):
        params = {"Ingestion": ingestion, "OnSourceDelete": mode, **filters}
        nc = deployed_props(tpl, src, **params)["NotificationConfiguration"]
        assert other not in nc, f"{ingestion}/{mode}: unexpected {other}"
        configs = {c["Event"]: c for c in nc[key]}
        expected = {"s3:ObjectCreated:*"} | ({"s3:ObjectRemoved:*"} if mode == "delete" else set())
        assert set(configs) == expected and len(nc[key]) == len(expected), (ingestion, mode, nc[key])
        created = configs["s3:ObjectCreated:*"]
        if filters:
            rules = {r["Name"]: r["Value"] for r in created["Filter"]["S3Key"]["Rules"]}
            assert rules == {k.removeprefix("Key").lower(): v for k, v in filters.items()}, rules
        else:
            assert "Filter" not in created, "no filter parameters, but a Filter is emitted"
        if mode == "delete":
            removed = configs["s3:ObjectRemoved:*"]
            assert removed[target] == created[target], "ObjectRemoved must go to the same target"
            assert removed.get("Filter") == created.get("Filter"), "ObjectRemoved must use the same key filters"
            assert set(removed) == set(created), (removed, created)


def _bucket_of(t: dict, resource_node, params: dict) -> str:
    """The bucket name in an S3 ARN (arn:aws:s3:::<bucket>[/...]) as deployed with params."""
    arn = render(t, resource_node, params)
    m = re.fullmatch(r"arn:aws:s3:::([^/]+)(/.*)?", arn)
    assert m, f"not an S3 ARN: {arn!r}"
    return m.group(1)


def test_delete_object_only_when_deleting(tpl, monkeypatch):
    """s3:DeleteObject is granted only with OnSourceDelete=delete, only to the function, only on
    the destination bucket's objects; s3:DeleteObjectVersion (which would destroy the history
    the versioned bucket keeps) never."""
    if not _single_template(tpl):
        pytest.skip("OnSourceDelete lives in the single template")
    fn_name, _ = the_function(tpl)
    assert "s3:DeleteObjectVersion" not in json.dumps(tpl)
    # In the template: every DeleteObject statement is the true branch of !If DeletesRenditions.
    for path, st in policy_statements(tpl):
        if "s3:DeleteObject" in as_list(st["Action"]):
            assert path[:2] == ("Resources", fn_name), f"DeleteObject outside the function: {path}"
            parent = tpl
            for p in path[:-1]:
                parent = parent[p]
            assert path[-1] == 1 and isinstance(parent, list) and parent[0] == "DeletesRenditions", path
    for params in NAME_CASES:
        for ingestion in ("direct", "sqs"):
            base = {**params, "Ingestion": ingestion}
            assert "s3:DeleteObject" not in json.dumps(evaluate(tpl, tpl["Resources"], {**base, "OnSourceDelete": "keep"}))
            deleting = [
                (path, st) for path, st in policy_statements(evaluate(tpl, tpl["Resources"], {**base, "OnSourceDelete": "delete"}))
                if "s3:DeleteObject" in as_list(st["Action"])
            ]
            assert len(deleting) == 1, deleting
            path, st = deleting[0]
            assert path[0] == fn_name, path
            assert as_list(st["Action"]) == ["s3:DeleteObject"], st["Action"]
            assert st["Effect"] == "Allow"
            for res in as_list(st["Resource"]):
                assert render(tpl, res, base).endswith("/*"), res
                assert _bucket_of(tpl, res, base) == bucket_name(tpl, _destination_bucket_id(tpl), base)
    # The SAM expansion keeps the statement conditional (on the function's role).
    if HAVE_CFNLINT:
        out = sam_translate(tpl, monkeypatch)
        for mode in ("keep", "delete"):
            roles = json.dumps(evaluate(out, resources(out, "AWS::IAM::Role"), {"OnSourceDelete": mode}))
            assert ("s3:DeleteObject" in roles) == (mode == "delete"), mode


# --------------------------------------------------------------------------- backfill (S3 Batch Operations)


def test_backfill_batch_role(tpl):
    if not _single_template(tpl):
        pytest.skip("the backfill role lives in the single template")
    fn_name, _ = the_function(tpl)
    role = tpl["Resources"].get("BackfillBatchRole")
    assert role and role["Type"] == "AWS::IAM::Role", "missing AWS::IAM::Role BackfillBatchRole"
    props = role["Properties"]
    assert not props.get("ManagedPolicyArns"), "the backfill role needs no managed policy"
    trust = props["AssumeRolePolicyDocument"]["Statement"]
    assert len(trust) == 1, trust
    assert trust[0]["Effect"] == "Allow" and trust[0]["Action"] == "sts:AssumeRole", trust[0]
    assert trust[0]["Principal"] == {"Service": "batchoperations.s3.amazonaws.com"}, trust[0]["Principal"]

    statements = [st for _, st in policy_statements(props["Policies"])]
    by_action: dict[str, list] = {}
    for st in statements:
        assert st["Effect"] == "Allow"
        for a in as_list(st["Action"]):
            by_action.setdefault(a, []).extend(as_list(st["Resource"]))
    assert set(by_action) == {"lambda:InvokeFunction", "s3:GetObject", "s3:GetObjectVersion", "s3:PutObject",
                              "s3:GetBucketLocation"}, sorted(by_action)
    invoke = by_action["lambda:InvokeFunction"]
    assert references(invoke) == {fn_name}, references(invoke)
    assert sorted(render(tpl, r) for r in invoke) == [f"<{fn_name}.Arn>", f"<{fn_name}.Arn>:*"]

    src_id, dst_id = _source_bucket_id(tpl), _destination_bucket_id(tpl)
    s3_statements = [st for st in statements if any(a.startswith("s3:") for a in as_list(st["Action"]))]
    for st in s3_statements:
        refs = references(st)
        assert not refs & {src_id, "SourceBucketName"}, f"{st.get('Sid')}: references the source bucket ({refs})"
    # Resolved: manifests read and reports written under the ops bucket's renditions/ prefixes;
    # the ops bucket is BackfillOpsBucketName, else the destination bucket, never the source.
    for params in NAME_CASES + [{**NAME_CASES[1], "BackfillOpsBucketName": "my-ops"}, {"BackfillOpsBucketName": "my-ops"}]:
        ops = params.get("BackfillOpsBucketName") or bucket_name(tpl, dst_id, params)
        assert render(tpl, tpl["Outputs"]["BackfillOpsBucket"]["Value"], params) == ops
        arns = {a: sorted(render(tpl, r, params) for r in rs) for a, rs in by_action.items() if a.startswith("s3:")}
        assert arns == {
            "s3:GetObject": [f"arn:aws:s3:::{ops}/renditions/manifests/*"],
            "s3:GetObjectVersion": [f"arn:aws:s3:::{ops}/renditions/manifests/*"],
            "s3:PutObject": [f"arn:aws:s3:::{ops}/renditions/reports/*"],
            "s3:GetBucketLocation": [f"arn:aws:s3:::{ops}"],
        }, (params, arns)
        assert bucket_name(tpl, src_id, params) not in json.dumps(arns), (params, arns)
    # An explicit ops bucket equal to an explicit source bucket is refused before deploying.
    rule = json.dumps(tpl.get("Rules", {}))
    assert '"BackfillOpsBucketName"' in rule and '"SourceBucketName"' in rule, "no rule keeping the ops bucket off the source"


def test_backfill_outputs(tpl):
    if not _single_template(tpl):
        pytest.skip("the backfill role lives in the single template")
    fn_name, _ = the_function(tpl)
    outs = tpl["Outputs"]
    assert outs["BackfillBatchRoleArn"]["Value"] == {"Fn::GetAtt": ["BackfillBatchRole", "Arn"]}
    assert outs["FunctionArn"]["Value"] == {"Fn::GetAtt": [fn_name, "Arn"]}
    src_id, dst_id = _source_bucket_id(tpl), _destination_bucket_id(tpl)
    for params in NAME_CASES + [{"BackfillOpsBucketName": "my-ops"}]:
        source = bucket_name(tpl, src_id, params)
        ops = params.get("BackfillOpsBucketName") or bucket_name(tpl, dst_id, params)
        assert render(tpl, outs["BackfillCommand"]["Value"], params) == (
            f"renditions backfill s3://{source}/ --manifest-out manifest.csv --function-arn <{fn_name}.Arn> "
            f"--role-arn <BackfillBatchRole.Arn> --report-bucket {ops}"
        ), params
    assert render(tpl, outs["BackfillCommand"]["Value"]).startswith("renditions backfill s3://stk-123456789012-source/ ")
