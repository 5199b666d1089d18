"""CKP004 final sync / init_sync and CKP005 atomic writes."""

from __future__ import annotations

from tests.codemods.helpers import codes, findings, rewrite, src

MAIN = src(
    """
    def train(model):
        for epoch in range(3):
            model(epoch).backward()
            if dist.get_rank() == 0:
                torch.save(model.state_dict(), "ckpt.pt")

    def main():
        dist.init_process_group("gloo")
        train(model)
        # tear down
        dist.destroy_process_group()
    """
)


def test_final_sync_before_destroy_and_init_sync_after_init() -> None:
    assert [f[:2] for f in findings(MAIN) if f[1] == "CKP004"] == [(13, "CKP004")]
    after = rewrite(MAIN, select=frozenset({"CKP004"}))
    assert (
        '    dist.init_process_group("gloo")\n'
        "    init_sync()\n"
        "    train(model)\n"
        "    # tear down\n"
        "    final_sync(timeout=180)\n"
        "    dist.destroy_process_group()\n"
    ) in after
    assert "from ckptfix.runtime import final_sync, init_sync\n" in after


def test_final_sync_inline_has_no_init_sync() -> None:
    after = rewrite(MAIN, select=frozenset({"CKP004"}), style="inline", final_timeout=60.0)
    assert "init_sync" not in after
    assert (
        "    if dist.is_initialized():\n        dist.barrier(timeout=datetime.timedelta(seconds=60))\n"
        in after
    )


def test_existing_sync_before_destroy_subgroup_destroy_and_no_checkpoint() -> None:
    synced = MAIN.replace("    # tear down\n", "    dist.barrier()\n")
    assert "CKP004" not in codes(synced)
    # A barrier reached through the training helper (after its last save) also counts.
    in_helper = MAIN.replace('"ckpt.pt")\n', '"ckpt.pt")\n        dist.barrier()\n')
    assert "CKP004" not in codes(in_helper)
    subgroup = MAIN.replace("dist.destroy_process_group()", "dist.destroy_process_group(group)")
    # Destroying a subgroup does not end training: the finding moves to the training function's end.
    assert [f[:2] for f in findings(subgroup) if f[1] == "CKP004"] == [(3, "CKP004")]
    no_checkpoint = MAIN.replace('torch.save(model.state_dict(), "ckpt.pt")', "print(1)")
    assert "CKP004" not in codes(no_checkpoint)


def test_training_function_end_when_no_destroy() -> None:
    before = src(
        """
        def fit(model):
            for epoch in range(3):
                model(epoch).backward()
                dist.barrier()  # before the write: does not wait for the last one
                if dist.get_rank() == 0:
                    torch.save(model, "ckpt.pt")
            return model
        """
    )
    assert (3, "CKP004", True) in findings(before)
    after = rewrite(before, select=frozenset({"CKP004"}))
    assert '"ckpt.pt")\n    final_sync(timeout=180)\n    return model\n' in after
    # every iteration ending in a barrier after its write: the last checkpoint is already waited for
    early = "        dist.barrier()  # before the write: does not wait for the last one\n"
    late = '"ckpt.pt")\n        dist.barrier()\n'
    ends_in_barrier = before.replace(early, "").replace('"ckpt.pt")\n', late)
    assert "CKP004" not in codes(ends_in_barrier)


def test_runtime_barrier_without_init_sync_is_reported() -> None:
    before = src(
        """
        from ckptfix.runtime import checkpoint_barrier
        def main():
            dist.init_process_group("gloo")
            checkpoint_barrier(timeout=120)
        """
    )
    assert findings(before) == [(5, "CKP004", True)]
    assert "    init_sync()\n" in rewrite(before)


# --- CKP005 ---------------------------------------------------------------------------------------------


def test_keyword_arguments_map_to_atomic_save() -> None:
    before = src(
        "def f(m, p):\n    if dist.get_rank() == 0:\n        torch.save(f=p, obj=m, pickle_protocol=4)\n"
    )
    after = rewrite(before, select=frozenset({"CKP005"}))
    assert "        atomic_save(m, p, pickle_protocol=4)\n" in after


def test_positional_arguments_keep_their_bytes() -> None:
    before = src("def f(m, p):\n    if dist.get_rank() == 0:\n        torch.save( m ,  p )\n")
    assert "        atomic_save( m ,  p )\n" in rewrite(before, select=frozenset({"CKP005"}))


def test_hand_written_atomic_write_is_fine() -> None:
    before = src(
        """
        def f(m, p):
            if dist.get_rank() == 0:
                torch.save(m, p + ".tmp")
                os.replace(p + ".tmp", p)
            dist.barrier()
        """,
        "import os\nimport torch\nimport torch.distributed as dist\n",
    )
    assert codes(before) == ["CKP008"]  # atomic, guarded, followed by a barrier; only not in a try


def test_inline_atomic_write() -> None:
    before = src(
        "def f(m, d):\n    if dist.get_rank() == 0:\n        torch.save(m, os.path.join(d, 'c.pt'))\n",
        "import torch\nimport torch.distributed as dist\n",
    )
    before = "import os\n" + before
    after = rewrite(before, style="inline", select=frozenset({"CKP005"}))
    assert (
        "        checkpoint_path = os.path.join(d, 'c.pt')\n"
        '        tmp_path = os.fspath(checkpoint_path) + ".tmp"\n'
        "        try:\n"
        '            with open(tmp_path, "wb") as checkpoint_file:\n'
        "                torch.save(m, checkpoint_file)\n"
        "                checkpoint_file.flush()\n"
        "                os.fsync(checkpoint_file.fileno())\n"
        "            os.replace(tmp_path, checkpoint_path)\n"
        "        finally:\n"
        "            if os.path.exists(tmp_path):\n"
        "                os.remove(tmp_path)\n"
    ) in after
    assert after.startswith("import os\nimport torch\nimport torch.distributed as dist\ndef")


def test_safetensors_is_guarded_but_not_made_atomic() -> None:
    before = src(
        "def f(t, p):\n    save_file(t, p)\n",
        "from safetensors.torch import save_file\nimport torch.distributed as dist\n",
    )
    assert codes(before) == ["CKP001", "CKP002"]
