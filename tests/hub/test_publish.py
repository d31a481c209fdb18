"""Publishing: the staged repo folder, the Hub calls, and read-back over HTTP.

The Hub is unreachable here, so each test says what it proves:
- staged-folder tests load the folder with `load_dataset(folder, config)`: the files and YAML are right;
- `RecordingHfApi` is a stand-in for `HfApi` that records calls and raises scripted errors: it proves the arguments
  publish_dataset passes (and its retry, error and card-merge logic), not the wire protocol;
- the olah tests serve the staged folder as a git repo through the Hub's read API on 127.0.0.1 (olah, offline
  mode) and read it back with stock `load_dataset(repo_id)` / `snapshot_download` via HF_ENDPOINT in a
  subprocess: what is staged is a repo the real clients load. Writes (upload) are not covered by olah.
"""

import json
import logging
import shutil
import urllib.error
import urllib.request
from fnmatch import fnmatchcase
from pathlib import Path
from types import SimpleNamespace

import httpx2
import pandas as pd
import pyarrow.parquet as pq
import pytest
from datasets import ClassLabel, DatasetDict, load_dataset
from huggingface_hub import DatasetCard
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RemoteEntryNotFoundError
from olah_mirror import olah_mirror, read_back, sha256_tree
from publishing_data import FLAWS, scored_dataset

from resofilter_hf.hub import publish as hub
from resofilter_hf.hub.merge import SECTION
from resofilter_hf.hub.publish import PublishError, publish_dataset
from resofilter_hf.provenance import load_scored, parquet_provenance, read_provenance, write_parquet
from resofilter_hf.selection import select_by_resonance


TOKEN = "hf_TESTtokenNeverWrittenAnywhere0123456789"


def assert_same_rows(loaded, expected):
    """Same features, same rows in the same order (NaN equal to NaN)."""
    assert loaded.features == expected.features
    pd.testing.assert_frame_equal(loaded.to_pandas(), expected.to_pandas(), check_exact=True)


def json_roundtrip(value):
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def staged_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def two_splits():
    labels = ClassLabel(names=list(FLAWS))  # labels stored as codes: features must survive the round trip
    return DatasetDict(
        train=scored_dataset(48, seed=0).cast_column("flaw", labels),
        test=scored_dataset(24, seed=1).cast_column("flaw", labels),
    )


# --------------------------------------------------------------------------------------------- the staged folder


def test_staged_folder_loads_back_identically(two_splits, tmp_path):
    folder = tmp_path / "repo"
    out = publish_dataset(two_splits, "me/demo", configs=[0.5], local_dir=folder, push=False)
    assert out.folder == folder and out.commit_url is None
    expected = {
        "default": two_splits,
        "keep50": DatasetDict({split: select_by_resonance(ds, keep=0.5) for split, ds in two_splits.items()}),
    }
    assert out.configs == {name: {s: len(d) for s, d in dd.items()} for name, dd in expected.items()}
    for name, splits in expected.items():
        loaded = load_dataset(str(folder), name, cache_dir=str(tmp_path / "cache"))
        assert set(loaded) == set(splits)
        for split, ds in splits.items():
            assert_same_rows(loaded[split], ds)
    # no config name: the default one, i.e. every scored row
    assert_same_rows(load_dataset(str(folder), cache_dir=str(tmp_path / "cache"))["train"], two_splits["train"])


def test_staged_card_yaml_matches_the_files(two_splits, tmp_path):
    folder = tmp_path / "repo"
    publish_dataset(
        two_splits, "me/demo", configs={"strict": {"keep": 0.25, "dedup_on": None}}, local_dir=folder, push=False
    )
    card = DatasetCard.load(folder / "README.md")
    configs = {c["config_name"]: c for c in card.data.to_dict()["configs"]}
    assert list(configs) == ["default", "strict"] and configs["default"]["default"] is True
    listed = []
    for name, config in configs.items():
        for entry in config["data_files"]:
            paths = entry["path"] if isinstance(entry["path"], list) else [entry["path"]]
            listed += paths
            rows = sum(pq.read_metadata(folder / p).num_rows for p in paths)
            source = two_splits[entry["split"]]
            expected = source if name == "default" else select_by_resonance(source, keep=0.25, dedup_on=None)
            assert rows == len(expected)
            for p in paths:  # each file carries its rows' provenance
                assert parquet_provenance(folder / p) == json_roundtrip(read_provenance(expected))
    # the YAML lists exactly the parquet files that were staged; the rest is the card and its images
    files = staged_files(folder)
    assert sorted(listed) == [f for f in files if f.endswith(".parquet")]
    images = {f"images/resonance_default{kind}.png" for kind in ("", "_confounds", "_keep")}  # the report's figures
    assert set(files) - set(listed) == {"README.md", *images, ".resofilter-staged.json"}  # and the staging record
    assert "(images/resonance_default.png)" in card.text


def test_large_splits_are_sharded(monkeypatch, tmp_path):
    ds = scored_dataset(48)
    monkeypatch.setattr(hub, "SHARD_BYTES", hub._nbytes(ds) / 3.5)  # -> 4 shards
    folder = tmp_path / "repo"
    publish_dataset(ds, local_dir=folder)
    card = DatasetCard.load(folder / "README.md")
    (entry,) = card.data.to_dict()["configs"][0]["data_files"]
    assert entry["path"] == [f"data/default/train-{i:05d}-of-00004.parquet" for i in range(4)]
    assert_same_rows(load_dataset(str(folder), "default", cache_dir=str(tmp_path / "c"))["train"], ds)


def test_stage_only_and_local_dir_rules(tmp_path):
    ds = scored_dataset(12)
    with pytest.raises(ValueError, match="needs local_dir"):
        publish_dataset(ds)  # no repo, no folder: nothing to do
    with pytest.raises(ValueError, match="needs local_dir"):
        publish_dataset(ds, "me/demo", push=False)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        publish_dataset(ds, local_dir=foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"
    # restaging over an earlier staging replaces it: keep50 is gone the second time
    folder = tmp_path / "repo"
    publish_dataset(ds, local_dir=folder, configs=[0.5])
    assert (folder / "data" / "keep50").is_dir()
    out = publish_dataset(ds, local_dir=folder)
    assert not (folder / "data" / "keep50").exists() and list(out.configs) == ["default"]
    # with no repo id the card's snippets load the folder itself
    assert f'load_dataset("{folder}", "default")' in (folder / "README.md").read_text()


def test_a_dataset_read_from_the_staging_folder_is_refused_and_a_label_column_may_be_one_name(tmp_path):
    """Staging replaces what an earlier staging wrote; rows read from those files would be lost with them."""
    from datasets import load_from_disk

    folder = tmp_path / "repo"
    scored_dataset(12).save_to_disk(str(folder / "saved"))
    inside = load_from_disk(str(folder / "saved"))
    with pytest.raises(ValueError, match=f"the output {folder} would overwrite the input {folder}/saved/"):
        publish_dataset(inside, local_dir=folder)
    assert len(load_from_disk(str(folder / "saved"))) == 12
    with pytest.raises(ValueError, match="are not columns"):
        publish_dataset(scored_dataset(12), local_dir=tmp_path / "new", label_columns=["flw"])
    assert not (tmp_path / "new").exists()  # a folder the failed call made is not left behind, empty
    out = publish_dataset(scored_dataset(12), local_dir=tmp_path / "other", label_columns="flaw")  # not f, l, a, w
    assert "flaw" in (out.folder / "README.md").read_text()


def test_configs_argument(tmp_path):
    ds = scored_dataset(24)
    out = publish_dataset(ds, local_dir=tmp_path / "a", configs=[0.5, 0.125])
    assert list(out.configs) == ["default", "keep50", "keep12_5"]
    assert out.configs["keep12_5"]["train"] == len(select_by_resonance(ds, keep=0.125))
    out = publish_dataset({"scored": ds}, local_dir=tmp_path / "b", configs={"half": 0.5})
    assert out.configs["half"]["train"] == len(select_by_resonance(ds, keep=0.5))
    with pytest.raises(ValueError, match="'default' config"):
        publish_dataset({"a": ds, "b": ds}, local_dir=tmp_path / "c", configs=[0.5])
    with pytest.raises(ValueError, match="'keep50' is given and also asked for"):
        publish_dataset({"default": ds, "keep50": ds}, local_dir=tmp_path / "d", configs=[0.5])
    with pytest.raises(
        ValueError, match=r"splits 'train' and 'test' of config 'default' differ in columns \['flaw'\]"
    ):
        publish_dataset(
            DatasetDict(train=ds, test=ds.cast_column("flaw", ClassLabel(names=list(FLAWS)))), local_dir=tmp_path / "g"
        )
    with pytest.raises(ValueError, match="config name 'a b'"):
        publish_dataset({"a b": ds}, local_dir=tmp_path / "e")
    with pytest.raises(ValueError, match="keep=1.5"):
        publish_dataset(ds, local_dir=tmp_path / "f", configs=[1.5])


def test_load_scored_gets_provenance_back(tmp_path):
    ds = select_by_resonance(scored_dataset(24), keep=0.5)
    write_parquet(ds, tmp_path / "x.parquet", read_provenance(ds))
    back = load_scored(tmp_path / "x.parquet")
    assert_same_rows(back, ds)
    assert read_provenance(back) == json_roundtrip(read_provenance(ds))
    ds.save_to_disk(str(tmp_path / "saved"))
    assert read_provenance(load_scored(tmp_path / "saved")) == read_provenance(ds)
    with pytest.raises(ValueError, match="not a save_to_disk folder"):
        load_scored(tmp_path / "x.txt")


# ---------------------------------------------------------------------------------------- the Hub calls (stand-in)


def http_error(status: int, cls=HfHubHTTPError):
    response = httpx2.Response(status, request=httpx2.Request("POST", "https://huggingface.co/api/x"))
    return cls(f"{status} error", response=response)


class RecordingHfApi:
    """A stand-in for `HfApi`: records each call's arguments and raises scripted errors. It proves the arguments
    publish_dataset passes, not the wire: nothing here speaks HTTP."""

    def __init__(self, readme: str | None = None, failures: dict[str, list[BaseException]] | None = None):
        self.readme = readme  # the repo's README.md, None when it has none
        self.failures = failures or {}
        self.calls: list[tuple[str, tuple, dict]] = []
        self.uploaded: dict[str, bytes] = {}  # the folder's files as upload_folder saw them

    def _call(self, name, args, kwargs):
        self.calls.append((name, args, kwargs))
        if self.failures.get(name):
            raise self.failures[name].pop(0)

    def create_repo(self, *args, **kwargs):
        self._call("create_repo", args, kwargs)
        return f"https://huggingface.co/datasets/{args[0] if args else kwargs['repo_id']}"

    def hf_hub_download(self, *args, **kwargs):
        self._call("hf_hub_download", args, kwargs)
        if self.readme is None:
            raise http_error(404, RemoteEntryNotFoundError)
        path = Path(kwargs["local_dir"]) / "README.md"
        path.write_text(self.readme)
        return str(path)

    def upload_folder(self, **kwargs):
        self._call("upload_folder", (), kwargs)
        folder = Path(kwargs["folder_path"])
        allowed = kwargs.get("allow_patterns")  # as the real client filters: fnmatch on the relative paths
        chosen = [f for f in staged_files(folder) if allowed is None or any(fnmatchcase(f, p) for p in allowed)]
        self.uploaded = {f: (folder / f).read_bytes() for f in chosen}
        return SimpleNamespace(commit_url=f"https://huggingface.co/datasets/{kwargs['repo_id']}/commit/abc")

    def names(self):
        return [name for name, _, _ in self.calls]


@pytest.fixture
def sleeps(monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(hub, "_sleep", waits.append)
    return waits


def test_upload_is_one_create_repo_and_one_upload_folder(sleeps):
    ds = scored_dataset(24)
    api = RecordingHfApi()
    out = publish_dataset(ds, "me/demo", configs=[0.5], private=True, token=TOKEN, commit_message="v1", api=api)
    assert api.names() == ["create_repo", "hf_hub_download", "upload_folder"]
    _, args, kwargs = api.calls[0]
    assert args == ("me/demo",)
    assert kwargs == {"repo_type": "dataset", "private": True, "exist_ok": True, "token": TOKEN}
    _, args, kwargs = api.calls[1]
    assert args == ("me/demo", "README.md") and kwargs["repo_type"] == "dataset" and kwargs["token"] == TOKEN
    _, _, kwargs = api.calls[2]
    assert kwargs["repo_id"] == "me/demo" and kwargs["repo_type"] == "dataset"
    assert kwargs["commit_message"] == "v1" and kwargs["token"] == TOKEN
    assert kwargs["delete_patterns"] == ["data/default/*", "data/keep50/*"]
    assert sorted(kwargs["allow_patterns"]) == sorted(api.uploaded)  # exactly the files staging wrote
    # what was uploaded is the whole staged repo; the temporary staging folder is gone afterwards
    assert set(api.uploaded) == {
        "README.md",
        "data/default/train-00000-of-00001.parquet",
        "data/keep50/train-00000-of-00001.parquet",
        "images/resonance_default.png",
        "images/resonance_default_confounds.png",
        "images/resonance_default_keep.png",
    }
    assert out.folder is None and not Path(kwargs["folder_path"]).exists()
    assert out.commit_url.endswith("/commit/abc") and sleeps == []
    # the default message names the configs
    api = RecordingHfApi()
    publish_dataset(ds, "me/demo", api=api)
    assert api.calls[-1][2]["commit_message"].startswith("Publish resonance-scored configs default (resofilter-hf ")


def test_transient_errors_are_retried_with_backoff(sleeps, tmp_path):
    api = RecordingHfApi(
        failures={
            "create_repo": [httpx2.ConnectError("connection refused"), http_error(503)],
            "hf_hub_download": [LocalEntryNotFoundError("no cache")],  # a download error hiding ...
            "upload_folder": [http_error(429), httpx2.ReadTimeout("timed out")],
        }
    )
    api.failures["hf_hub_download"][0].__cause__ = httpx2.ConnectError("down")  # ... a network failure
    out = publish_dataset(scored_dataset(12), "me/demo", api=api, local_dir=tmp_path / "repo")
    assert api.names() == ["create_repo"] * 3 + ["hf_hub_download"] * 2 + ["upload_folder"] * 3
    assert sleeps == [2.0, 4.0, 2.0, 2.0, 4.0]  # doubling from BACKOFF_S, restarting for each call
    assert out.commit_url and out.folder == tmp_path / "repo"


def test_persistent_failure_names_the_staged_folder(sleeps, tmp_path):
    folder = tmp_path / "repo"
    api = RecordingHfApi(failures={"upload_folder": [httpx2.ConnectError("down")] * 10})
    with pytest.raises(PublishError) as info:
        publish_dataset(scored_dataset(12), "me/demo", api=api, local_dir=folder)
    assert api.names().count("upload_folder") == hub.TRIES == 4
    assert sleeps == [2.0, 4.0, 8.0]
    assert str(folder) in str(info.value) and info.value.folder == folder
    assert "hf upload me/demo" in str(info.value)
    assert {"README.md", "data/default/train-00000-of-00001.parquet"} <= set(staged_files(folder))
    # a temporary staging folder is kept too when the upload fails
    api = RecordingHfApi(failures={"upload_folder": [httpx2.ConnectError("down")] * 10})
    with pytest.raises(PublishError) as info:
        publish_dataset(scored_dataset(12), "me/demo", api=api)
    assert (info.value.folder / "README.md").is_file()
    shutil.rmtree(info.value.folder)


def test_permanent_errors_are_not_retried(sleeps, tmp_path):
    api = RecordingHfApi(failures={"create_repo": [http_error(401)]})
    with pytest.raises(PublishError, match="401 error") as info:
        publish_dataset(scored_dataset(12), "me/demo", api=api, local_dir=tmp_path / "repo")
    assert api.names() == ["create_repo"] and sleeps == []
    assert info.value.folder == tmp_path / "repo"


def test_republish_edits_the_existing_card(sleeps, tmp_path):
    ds = scored_dataset(24)
    first = RecordingHfApi()
    publish_dataset(ds, "me/demo", api=first)
    card = DatasetCard(first.uploaded["README.md"].decode())
    card.text = card.text.replace("# demo", "# Demo, curated\n\nWritten by a person.")
    card.data.license = "cc-by-4.0"
    second = RecordingHfApi(readme=str(card))
    publish_dataset(ds, "me/demo", configs=[0.5], api=second, local_dir=tmp_path / "repo")
    uploaded = second.uploaded["README.md"].decode()
    merged = DatasetCard(uploaded)
    assert "# Demo, curated\n\nWritten by a person." in merged.text
    assert merged.data.license == "cc-by-4.0"
    assert [c["config_name"] for c in merged.data.configs] == ["default", "keep50"]
    assert "### `keep50`" in merged.text  # generated sections are the new ones
    names = [m.group(1) for m in SECTION.finditer(merged.text)]
    assert len(names) == len(set(names)) and "selection" in names  # each generated section once
    # the staged folder holds exactly what was uploaded
    assert (tmp_path / "repo" / "README.md").read_text() == uploaded


def test_token_is_never_printed_logged_or_written(sleeps, tmp_path, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    folder = tmp_path / "repo"
    ok = RecordingHfApi(failures={"upload_folder": [httpx2.ConnectError(f"refused {TOKEN}")]})
    publish_dataset(scored_dataset(12), "me/demo", token=TOKEN, api=ok, local_dir=folder)
    assert all(kwargs.get("token") == TOKEN for _, _, kwargs in ok.calls)  # it did reach the client
    failing = RecordingHfApi(failures={"upload_folder": [http_error(403)]})
    failing.failures["upload_folder"][0].args = (f"403 Forbidden for token {TOKEN}",)
    with pytest.raises(PublishError) as info:
        publish_dataset(scored_dataset(12), "me/demo", token=TOKEN, api=failing, local_dir=folder)
    assert TOKEN not in str(info.value) and "<token>" in str(info.value)
    out, err = capfd.readouterr()
    assert caplog.records and "try 2 of 4" in caplog.text  # the retry was logged ...
    for text in (caplog.text, out, err):  # ... without the token
        assert TOKEN not in text
    for path in folder.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    assert all(TOKEN.encode() not in data for data in ok.uploaded.values())


# ----------------------------------------------------------------------------------- read-back over HTTP (olah)


@pytest.fixture(scope="module")
def olah(tmp_path_factory):
    pytest.importorskip("olah", reason="olah (dev extra) serves the Hub read API for the read-back tests")
    with olah_mirror(tmp_path_factory.mktemp("olah")) as mirror:
        yield mirror


def test_read_back_over_http_through_olah(olah, two_splits, tmp_path):
    folder = tmp_path / "staged"
    publish_dataset(two_splits, "resofilter/readback", configs=[0.5], local_dir=folder, push=False)
    sha = olah.serve(folder, "resofilter/readback")
    out = tmp_path / "client"
    result = read_back(olah, "resofilter/readback", ["default", "keep50"], out, home=tmp_path / "hf")
    # load_dataset(repo_id, config) over HTTP gives the input rows back, config by config, split by split
    keep50 = {split: select_by_resonance(ds, keep=0.5) for split, ds in two_splits.items()}
    for name, splits in {"default": two_splits, "keep50": keep50}.items():
        for split, ds in splits.items():
            assert_same_rows(load_scored(out / f"{name}-{split}.parquet"), ds)
    assert result["default_splits"] == {"train": 48, "test": 24}
    # repo_info reads the card's YAML; snapshot_download gets the staged folder byte for byte
    assert result["sha"] == sha
    assert result["card_configs"] == DatasetCard.load(folder / "README.md").data.to_dict()["configs"]
    assert sha256_tree(Path(result["snapshot"])) == sha256_tree(folder)


def test_olah_mirror_is_read_only(olah):
    """Why uploads are tested with the stand-in: this server refuses writes."""
    request = urllib.request.Request(
        f"{olah.endpoint}/api/repos/create", data=b'{"name": "x", "type": "dataset"}', method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        olah.open(request)
    assert info.value.code in (404, 405)


# ------------------------------------------------------------------------------------------------------------ CLI


def test_cli_publish_stages_from_a_parquet_file(tmp_path, capsys):
    from resofilter_hf import cli

    ds = scored_dataset(24)
    source = write_parquet(ds, tmp_path / "scored.parquet", read_provenance(ds))
    folder = tmp_path / "repo"
    assert cli.main(["publish", str(source), "me/demo", "--keep", "0.5", "--local-dir", str(folder)]) == 0
    assert f"in {folder}" in capsys.readouterr().out
    loaded = load_dataset(str(folder), "keep50", cache_dir=str(tmp_path / "c"))["train"]
    assert_same_rows(loaded, select_by_resonance(ds, keep=0.5))
    text = (folder / "README.md").read_text()
    assert "`tiny-org/tiny-llama`" in text  # the provenance came through the parquet file
    assert 'load_dataset("me/demo", "keep50")' in text
    # a save_to_disk folder works the same; no repo id and no folder is a usage error
    ds.save_to_disk(str(tmp_path / "saved"))
    assert cli.main(["publish", str(tmp_path / "saved"), "--local-dir", str(tmp_path / "repo2")]) == 0
    assert cli.main(["publish", str(source)]) == 2


def test_cli_publish_uploads_and_reports_failures(monkeypatch, sleeps, tmp_path, capsys):
    from resofilter_hf import cli

    ds = scored_dataset(24)
    source = write_parquet(ds, tmp_path / "scored.parquet", read_provenance(ds))
    api = RecordingHfApi()
    monkeypatch.setattr(hub, "HfApi", lambda: api)
    args = ["publish", str(source), "me/demo", "--keep", "0.5", "--private", "--commit-message", "first"]
    assert cli.main(args) == 0
    assert api.names() == ["create_repo", "hf_hub_download", "upload_folder"]
    assert api.calls[0][2]["private"] is True and api.calls[2][2]["commit_message"] == "first"
    assert "data/keep50/train-00000-of-00001.parquet" in api.uploaded
    assert "/commit/abc" in capsys.readouterr().out
    api = RecordingHfApi(failures={"upload_folder": [http_error(403)]})
    assert cli.main(["publish", str(source), "me/demo"]) == 1
    err = capsys.readouterr().err
    folder = Path(api.calls[-1][2]["folder_path"])
    assert "403 error" in err and str(folder) in err and (folder / "README.md").is_file()
    shutil.rmtree(folder)
