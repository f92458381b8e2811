"""The main job's fresh start: a re-run removes the embedded broker's data and the local Delta tables
(an earlier run's topics already hold the held-back check-ins), never an external cluster's."""

from oneloc.config import OneLocConfig
from oneloc.demo import _fresh_start


def _cfg(tmp_path, **kafka) -> OneLocConfig:
    cfg = OneLocConfig()
    cfg.storage.root = str(tmp_path / "state")
    cfg.kafka.embedded.data_dir = str(tmp_path / "kafka")
    for k, v in kafka.items():
        setattr(cfg.kafka, k, v)
    for d in ("kafka/meta.properties", "state/delta/orders/_delta_log/0.json", "state/checkpoints/a.pt"):
        (tmp_path / d).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / d).write_text("x")
    return cfg


def test_a_rerun_starts_from_an_empty_embedded_broker_and_no_tables(tmp_path):
    removed = _fresh_start(_cfg(tmp_path))
    assert len(removed) == 2
    assert not (tmp_path / "kafka").exists() and not (tmp_path / "state/delta").exists()
    assert (tmp_path / "state/checkpoints/a.pt").exists()  # checkpoints and reports stay
    assert _fresh_start(OneLocConfig(storage={"root": str(tmp_path / "none")},
                                     kafka={"embedded": {"data_dir": str(tmp_path / "no-kafka")}})) == []


def test_an_external_cluster_is_never_touched(tmp_path):
    removed = _fresh_start(_cfg(tmp_path, bootstrap_servers="broker:9092"))
    assert removed == [f"the Delta tables ({tmp_path / 'state/delta'})"]
    assert (tmp_path / "kafka/meta.properties").exists()
