"""The CLI's contract with its supervisor: progress lines, one-line user errors, exit codes."""

from pathlib import Path

from conftest import run_cli


def test_unknown_command_exits_2():
    # `python -m tenet_trainer` itself, as the worker starts it (the other tests fork a pre-imported one).
    result = run_cli("no-such-command", fresh=True)
    assert result.returncode == 2
    assert "unknown command 'no-such-command'" in result.stderr


def test_make_tiny_writes_a_loadable_model(tmp_path: Path):
    out = tmp_path / "tiny"
    result = run_cli("make-tiny", "--output", str(out), "--seed", "3")
    assert result.returncode == 0, result.stderr
    done = result.last("done")
    assert done["output"] == str(out)
    assert done["parameters"] > 10_000
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tenet-tiny.json"):
        assert (out / name).is_file(), name
    # Running again replaces it (safe to repeat).
    assert run_cli("make-tiny", "--output", str(out), "--seed", "3").returncode == 0


def test_bad_flag_values_are_one_line_errors(tmp_path: Path):
    result = run_cli("make-tiny", "--output", str(tmp_path / "x"), "--vocab-size", "ten")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: --vocab-size: expected int, got 'ten'"]
    assert "Traceback" not in result.stderr


def test_a_bad_thread_count_is_a_one_line_error(tmp_path: Path):
    result = run_cli("make-tiny", "--output", str(tmp_path / "x"), env={"TENET_TORCH_THREADS": "many"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: TENET_TORCH_THREADS: expected a whole number of threads, 1 or more, got 'many'"]
    assert not (tmp_path / "x").exists()


def test_unknown_config_key_suggests_the_right_one(tmp_path: Path):
    config = tmp_path / "c.json"
    config.write_text('{"output": "x", "vocab_sise": 600}')
    result = run_cli("make-tiny", "--config", str(config))
    assert result.returncode == 2
    assert "unknown option 'vocab_sise' (did you mean 'vocab_size'?)" in result.stderr


def test_refuses_to_replace_a_folder_that_is_not_a_tiny_model(tmp_path: Path):
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "data.txt").write_text("keep me")
    result = run_cli("make-tiny", "--output", str(tmp_path / "precious"))
    assert result.returncode == 2
    assert (tmp_path / "precious" / "data.txt").read_text() == "keep me"
