import copy

import pytest
import yaml

from detoxlab import config as cfgmod
from tests.conftest import REPO


@pytest.fixture
def smoke() -> dict:
    return yaml.safe_load((REPO / "config/smoke.yaml").read_text())


def _error(cfg) -> str:
    with pytest.raises(cfgmod.ConfigError) as exc:
        cfgmod.validate(cfg)
    return str(exc.value)


def test_shipped_configs_validate_and_fill_defaults(monkeypatch):
    monkeypatch.chdir(REPO)
    for name in ("config.yaml", "smoke.yaml"):
        cfg = cfgmod.load(REPO / "config" / name)
        assert cfg["evaluation"]["toxicity"]["threshold"] == 0.5
        assert set(cfg["resources"]) >= {"default", "generate"}


def test_resources_can_live_in_a_file_of_their_own(smoke, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    res = tmp_path / "res.yaml"
    res.write_text("default: {threads: 3, mem_mb: 500}\ngenerate: {gpu: 1}\n")
    cfg = cfgmod.validate({**copy.deepcopy(smoke), "resources": str(res)})
    assert cfgmod.step_resources(cfg, "generate") == {"threads": 3, "mem_mb": 500, "runtime": 30, "gpu": 1}
    assert cfgmod.step_resources(cfg, "score") == {"threads": 3, "mem_mb": 500, "runtime": 30, "gpu": 0}
    assert "'resources'" in _error({**copy.deepcopy(smoke), "resources": str(tmp_path / "missing.yaml")})
    res.write_text("generate: {threads: many}\n")
    assert "'resources.generate.threads'" in _error({**copy.deepcopy(smoke), "resources": str(res)})


@pytest.mark.parametrize("mutate, key", [
    (lambda c: c["generation"].update(top_pp=0.9), "generation.top_pp"),
    (lambda c: c.update(genration={}), "genration"),
    (lambda c: c["generation"].update(top_p="high"), "generation.top_p"),
    (lambda c: c["generation"].update(samples_per_prompt=0), "generation.samples_per_prompt"),
    (lambda c: c["systems"].update(targets=["nope"]), "systems.targets[0]"),
    (lambda c: c["systems"].update(guides=["nope"]), "systems.guides[0]"),
    (lambda c: c["models"]["tiny_llama"].update(source="gguf"), "models.tiny_llama.source"),
    (lambda c: c["models"].update(m={"source": "gguf_pypi", "package": "no_such_pkg_x", "file": "x.gguf"}),
     "models.m.package"),
    (lambda c: c["models"].update(m={"source": "hf", "path": "/no/such/dir"}), "models.m.path"),
    (lambda c: c["evaluation"]["perplexity"].update(judges=["tiny_llama"]), "evaluation.perplexity.judges"),
    (lambda c: c["prompts"].update(path="data/prompts/missing.jsonl"), "prompts.path"),
    (lambda c: c["prompts"].update(groups=["no_such_group"]), "prompts.groups"),
    (lambda c: c["unidetox"]["lm_steer"].update(targets=["nope"]), "unidetox.lm_steer.targets[0]"),
    (lambda c: c["unidetox"]["base_samples"].update(targets=["nope"]), "unidetox.base_samples.targets[0]"),
    (lambda c: c["guided"]["attributes"]["sentiment"]["evaluation"].update(groups=["negatve"]),
     "guided.attributes.sentiment.evaluation.groups"),
    (lambda c: c["guided"]["attributes"]["sentiment"]["evaluation"].update(split="train"),
     "guided.attributes.sentiment.evaluation.split"),
    (lambda c: c["guided"]["attributes"]["sentiment"].update(
        prompts={"source": "sentiment_prompts", "path": "x"}, evaluation={"split": "validation"},
        data={"source": "sentiment", "path": "x.csv"}),
     "guided.attributes.sentiment.evaluation.split"),
    (lambda c: c["guided"]["attributes"]["sentiment"].update(
        prompts={"source": "sentiment_prompts", "path": "x", "groups": ["angry"]},
        data={"source": "sentiment", "path": "x.csv"}),
     "guided.attributes.sentiment.prompts.groups"),
    (lambda c: c["guided"]["attributes"]["toxicity"].update(evaluation={"groups": ["women"]}),
     "guided.attributes.toxicity.evaluation"),
    (lambda c: c["prompts"].update(source="realtoxicityprompts", groups=["rtp"]), "prompts.groups"),
    (lambda c: c["acf"].update(base="nope"), "acf.base"),
    (lambda c: c["acf"]["nado"].update(backbone="nope"), "acf.nado.backbone"),
    (lambda c: c["acf"]["runs"].update(base={"schedule": "parallel"}), "acf.runs.base"),
    (lambda c: c["acf"]["runs"].update(x={"schedule": "sequential", "importance_weights": True}),
     "acf.runs.x.importance_weights"),
    (lambda c: c["acf"]["runs"].update(x={"schedule": "staggered"}), "acf.runs.x.schedule"),
    (lambda c: c["acf"].update(data={"source": "toxigen"}), "acf.data.path"),
    (lambda c: c["acf"]["regulariser"].update(delta=1.5), "acf.regulariser.delta"),
    (lambda c: c["acf"].update(data={"source": "toxigen", "path": "x.csv"}, regulariser={"prompt_r": "monte_carlo"}),
     "acf.regulariser.prompt_r"),
    (lambda c: c["acf"].update(prompts={"source": "realtoxicityprompts", "path": "x"}), "acf.prompts"),
    # an unknown scorer fails here, before any generation, whichever attribute it scores
    (lambda c: c["scorer"].update(type="profanitycheck"), "scorer.type"),
    (lambda c: c["guided"]["attributes"]["sentiment"]["scorer"].update(type="vadr"),
     "guided.attributes.sentiment.scorer.type"),
])
def test_bad_config_names_the_key(smoke, mutate, key, monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = copy.deepcopy(smoke)
    mutate(cfg)
    assert f"'{key}'" in _error(cfg)


def test_select_keeps_only_the_named_keys(smoke, monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = cfgmod.validate(smoke)
    sub = cfgmod.select(cfg, ["seed", "evaluation.mmlu"])
    assert sub == {"seed": 0, "evaluation": {"mmlu": cfg["evaluation"]["mmlu"]}}


def test_judge_is_never_the_evaluated_model(smoke, monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = cfgmod.validate(smoke)
    assert cfgmod.judge_for(cfg, "tiny_llama") == "tiny_gemma"
    assert cfgmod.judge_for(cfg, "tiny_gemma") == "tiny_llama"


def test_baselines_run_on_the_targets_they_name(smoke, monkeypatch):
    from detoxlab.unidetox import plan

    monkeypatch.chdir(REPO)
    cfg = copy.deepcopy(smoke)
    cfg["unidetox"]["lm_steer"]["targets"] = ["tiny_gemma"]
    cfg["unidetox"]["base_samples"]["targets"] = ["tiny_llama"]
    sels = {(s.method, s.target) for s in plan.selections(cfgmod.validate(cfg))}
    assert ("lmsteer", "tiny_gemma") in sels and ("lmsteer", "tiny_llama") not in sels
    assert ("basesamples", "tiny_llama") in sels and ("basesamples", "tiny_gemma") not in sels
    assert {("unidetox", "tiny_llama"), ("unidetox", "tiny_gemma")} <= sels


@pytest.mark.parametrize("path", ["src/detoxlab/schemas/config.schema.yaml", "config/config.yaml", "config/paper.yaml",
                                  "config/smoke.yaml", "config/resources/default.yaml"])
def test_yaml_files_declare_each_key_once(path):
    """A YAML mapping with a repeated key loads silently with the last value: a stale second copy would win."""
    import yaml

    class Strict(yaml.SafeLoader):
        pass

    def mapping(loader, node):
        keys = [loader.construct_object(k) for k, _ in node.value]
        repeated = sorted({str(k) for k in keys if keys.count(k) > 1})
        assert not repeated, f"{path}: repeated keys {repeated} (line {node.start_mark.line + 1})"
        return loader.construct_mapping(node)

    Strict.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    yaml.load((REPO / path).read_text(), Loader=Strict)


def test_the_schema_knows_exactly_the_registered_scorers():
    from detoxlab.scorers import available_scorers

    assert sorted(cfgmod.schema()["$defs"]["scorer"]["properties"]["type"]["enum"]) == available_scorers()
