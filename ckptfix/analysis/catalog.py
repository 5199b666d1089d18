"""What the analysis knows about the outside world, kept as data so it can be reviewed and extended.

Every entry names its source of truth. Qualified names are canonical: `names.canonical` maps the
spellings torch re-exports (`torch.serialization.save`, `torch.distributed.distributed_c10d.barrier`)
onto these.
"""

from __future__ import annotations

# --- saves -------------------------------------------------------------------------------------------
# torch/serialization.py `save(obj, f, pickle_module, pickle_protocol, _use_new_zipfile_serialization,
# _disable_byteorder_record)`; re-exported as torch.save in torch/__init__.py.
TORCH_SAVE = "torch.save"
# safetensors/torch.py: save_file(tensors, filename, metadata=None), save_model(model, filename, ...).
SAFETENSORS_SAVES = frozenset({"safetensors.torch.save_file", "safetensors.torch.save_model"})
# ckptfix/runtime: atomic_save(obj, path, **kwargs) is a save too (an unguarded one is still CKP001).
RUNTIME_SAVES = frozenset({"ckptfix.runtime.atomic_save"})
# Positional index and keyword names of the (object, destination) arguments of each save.
SAVE_ARGS: dict[str, tuple[tuple[int, str], tuple[int, str]]] = {
    TORCH_SAVE: ((0, "obj"), (1, "f")),
    "safetensors.torch.save_file": ((0, "tensors"), (1, "filename")),
    "safetensors.torch.save_model": ((0, "model"), (1, "filename")),
    "ckptfix.runtime.atomic_save": ((0, "obj"), (1, "path")),
}
# transformers/modeling_utils.py PreTrainedModel.save_pretrained(save_directory, is_main_process=True,
# state_dict=None, save_function=torch.save, ...): matched by method name (the receiver's type is unknown).
HF_SAVE_PRETRAINED = "save_pretrained"
# Helpers of another module that write on the main process only by themselves (DETR, MAE, DINO, DeiT:
# `utils.save_on_master(state, path)`, torch.save's arguments): matched by name unless the module
# defines the name itself. Their call sites need the barrier after them; the write is the helper's.
DELEGATED_MAIN_SAVES = frozenset({"save_on_master"})

# --- the runtime the rewrite imports (ckptfix/runtime, names fixed by the project) --------------------
RUNTIME_MODULE = "ckptfix.runtime"

# --- distributed APIs ----------------------------------------------------------------------------------
# torch/distributed/distributed_c10d.py
BARRIERS = frozenset({"torch.distributed.barrier", "torch.distributed.monitored_barrier"})
INIT_PROCESS_GROUP = "torch.distributed.init_process_group"
# What else creates the default process group on every rank, so that init_sync() can follow it: without
# it, rank 0 publishes its progress only from its first atomic_save or barrier, and a first barrier
# with no gloo group of its own creates one once every rank arrived (review shape 13: Accelerator,
# deepspeed and mmengine set the group up).
PROCESS_GROUP_INITIALIZERS = frozenset(
    {
        INIT_PROCESS_GROUP,
        "accelerate.Accelerator",
        "accelerate.PartialState",
        "accelerate.state.PartialState",
        "deepspeed.init_distributed",
        "deepspeed.initialize",
        "deepspeed.comm.init_distributed",
        "mmengine.dist.init_dist",
        "mmengine._strategy.DDPStrategy",
        "mmengine._strategy.FSDPStrategy",
        "mmengine._strategy.DeepSpeedStrategy",
        "colossalai.launch_from_torch",
        "colossalai.launch",
    }
)
DESTROY_PROCESS_GROUP = "torch.distributed.destroy_process_group"
RUNTIME_BARRIERS = frozenset({"ckptfix.runtime.checkpoint_barrier", "ckptfix.runtime.final_sync"})
# Last name components that mean "every rank waits here" for helpers we cannot resolve: accelerate's
# Accelerator.wait_for_everyone, Lightning's strategy.barrier, detectron2/ppdet comm.synchronize.
BARRIER_LIKE_NAMES = frozenset(
    {"barrier", "monitored_barrier", "wait_for_everyone", "checkpoint_barrier", "final_sync", "synchronize"}
)
# Device synchronisation is not a rank barrier.
NOT_BARRIERS = frozenset(
    {"torch.cuda.synchronize", "torch.xpu.synchronize", "torch.mps.synchronize", "torch.cpu.synchronize"}
)

# Imports that make a module distributed training code (issue 3: torch.distributed, DDP/FSDP, accelerate,
# deepspeed, plus torch_xla, Lightning and Horovod, which launch several processes the same way).
DISTRIBUTED_MODULE_PREFIXES = (
    "torch.distributed",
    "torch.nn.parallel.DistributedDataParallel",
    "torch.nn.parallel.distributed",
    "accelerate",
    "deepspeed",
    "torch_xla",
    "lightning",
    "pytorch_lightning",
    "horovod",
)
# Launcher environment variables (torchrun, torch.distributed.launch, accelerate, deepspeed).
LAUNCHER_ENV_VARS = frozenset({"RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE"})
# Byte markers: a module can only be detected as distributed if one of these occurs in its text.
# Keep in step with DISTRIBUTED_MODULE_PREFIXES and LAUNCHER_ENV_VARS (tests check it).
DISTRIBUTED_MARKERS = (
    b"distributed",
    b"parallel",
    b"accelerate",
    b"deepspeed",
    b"torch_xla",
    b"lightning",
    b"horovod",
    b"RANK",
    b"WORLD_SIZE",
)

# --- main-process idioms (DESIGN.md "Main-process idioms to recognise") ---------------------------------
# Truthy names/attributes/calls meaning "global rank 0" (last name component, lower case).
MAIN_PREDICATES = frozenset(
    {
        "is_main_process",  # accelerate Accelerator.is_main_process, ckptfix.runtime, many repos
        "main_process",
        "is_main",
        "is_master",  # torchvision/detectron-style utils
        "master_process",  # nanoGPT
        "is_master_process",
        "is_master_proc",  # pyslowfast
        "is_chief",
        "is_primary",  # timm
        "is_rank_zero",
        "is_rank0",
        "rank_zero",
        "rank0",
        "is_global_zero",  # Lightning trainer.is_global_zero
        "is_world_process_zero",  # transformers Trainer.is_world_process_zero()
        "should_save",  # transformers TrainingArguments.should_save
        "is_master_ordinal",  # torch_xla xm.is_master_ordinal()
        "is_main_rank",
        "is_root",
    }
)
# Truthy predicates meaning "first process of this node": one writer per node, reported not accepted.
LOCAL_MAIN_PREDICATES = frozenset(
    {
        "is_local_main_process",
        "is_local_master",
        "is_local_process_zero",
        "is_local_rank_zero",
        "local_master",
    }
)
# Truthy predicates meaning "one rank that is not rank 0 writes" (Megatron's is_last_rank(): rank ==
# world_size - 1): a deliberate single writer, left alone like a shard's; nesting a rank-0 guard in it
# would write nothing at all.
OTHER_WRITER_PREDICATES = frozenset({"is_last_rank", "is_last_process"})
# Decorators that run the function on the main process only (Lightning rank_zero_only,
# accelerate Accelerator.on_main_process / PartialState.on_main_process).
MAIN_ONLY_DECORATORS = frozenset(
    {"rank_zero_only", "on_main_process", "main_process_only", "master_only", "rank0_only", "only_rank_zero"}
)
LOCAL_ONLY_DECORATORS = frozenset({"on_local_main_process"})
# Rank-valued calls (last component) that give a per-node rank.
LOCAL_RANK_CALLS = frozenset({"get_local_rank", "get_local_ordinal", "local_process_index"})
# Rank-valued identifiers besides those containing "rank" (lower-cased): per node, then global.
LOCAL_RANK_NAMES = frozenset({"gpu", "gpu_id", "device_id", "local_rank"})
LOCAL_RANK_HINTS = ("local_rank", "localrank", "local_process_index", "node_rank", "gpu_id")
GLOBAL_RANK_NAMES = frozenset({"process_index", "get_ordinal", "ordinal"})
# Environment variables holding the rank (torchrun, SLURM, Open MPI, MPICH/PMI, PALS).
GLOBAL_RANK_ENV = frozenset({"RANK", "GLOBAL_RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK"})
LOCAL_RANK_ENV = frozenset({"LOCAL_RANK", "SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK", "PALS_LOCAL_RANKID"})
# Identifiers naming one writer per model-parallel shard: deliberate, never a finding (DESIGN "Traps").
SHARD_RANK_HINTS = ("dp_rank", "data_parallel_rank", "dp_group_rank", "mp_rank", "tp_rank", "pp_rank")

# --- collectives (issue 4; CKP006) ----------------------------------------------------------------------
# torch/distributed/distributed_c10d.py __all__ collectives and group constructors, device_mesh.py,
# torch/distributed/checkpoint/state_dict_saver.py + state_dict_loader.py, checkpoint/state_dict.py.
COLLECTIVES = frozenset(
    {
        "torch.distributed.barrier",
        "torch.distributed.monitored_barrier",
        "torch.distributed.all_reduce",
        "torch.distributed.all_gather",
        "torch.distributed.all_gather_object",
        "torch.distributed.all_gather_into_tensor",
        "torch.distributed.broadcast",
        "torch.distributed.broadcast_object_list",
        "torch.distributed.reduce",
        "torch.distributed.reduce_scatter",
        "torch.distributed.reduce_scatter_tensor",
        "torch.distributed.gather",
        "torch.distributed.gather_object",
        "torch.distributed.scatter",
        "torch.distributed.scatter_object_list",
        "torch.distributed.all_to_all",
        "torch.distributed.all_to_all_single",
        "torch.distributed.send",
        "torch.distributed.recv",
        "torch.distributed.new_group",
        "torch.distributed.new_subgroups",
        "torch.distributed.device_mesh.init_device_mesh",
        "torch.distributed.checkpoint.save",
        "torch.distributed.checkpoint.async_save",
        "torch.distributed.checkpoint.load",
        "torch.distributed.checkpoint.save_state_dict",
        "torch.distributed.checkpoint.load_state_dict",
        "torch.distributed.checkpoint.state_dict.get_model_state_dict",
        "torch.distributed.checkpoint.state_dict.get_optimizer_state_dict",
        "torch.distributed.checkpoint.state_dict.get_state_dict",
        "torch.distributed.checkpoint.state_dict.set_model_state_dict",
        "torch.distributed.checkpoint.state_dict.set_optimizer_state_dict",
        "torch.distributed.checkpoint.state_dict.set_state_dict",
        # torch/distributed/fsdp/fully_sharded_data_parallel.py (FSDP1 static methods)
        "torch.distributed.fsdp.FullyShardedDataParallel.full_optim_state_dict",
        "torch.distributed.fsdp.FullyShardedDataParallel.optim_state_dict",
        "torch.distributed.fsdp.FullyShardedDataParallel.sharded_optim_state_dict",
        "torch.distributed.fsdp.FullyShardedDataParallel.summon_full_params",
        # Not a collective itself, but entered only to call `state_dict()`, which is one inside it
        # (FULL_STATE_DICT gathers every shard): under a guard it hangs the same way.
        "torch.distributed.fsdp.FullyShardedDataParallel.state_dict_type",
    }
)
# Method names specific enough to mean a collective on an object whose type is unknown (heuristics;
# `ckptfix explain CKP006` lists them), in two kinds. Those only torch's own classes define
# (ZeroRedundancyOptimizer.consolidate_state_dict, DTensor.full_tensor / redistribute, FSDP,
# ProcessGroup): matching them by name rests on no assumption worth the name.
TORCH_COLLECTIVE_METHODS = frozenset(
    {
        "consolidate_state_dict",
        "full_tensor",
        "redistribute",
        "summon_full_params",
        "state_dict_type",
        "full_optim_state_dict",
        "optim_state_dict",
        "all_reduce",
        "all_gather",
        "all_gather_object",
        "broadcast_object_list",
        "reduce_scatter",
    }
)
# The names frameworks use (accelerate Accelerator methods, DeepSpeed engine checkpoint methods,
# Lightning/Fabric strategy calls), which user classes reuse for plain writes (`saver.save_checkpoint()`
# on an object built on rank 0 only): a fix that rests on them is unsafe.
FRAMEWORK_COLLECTIVE_METHODS = frozenset(
    {
        "wait_for_everyone",
        "save_state",
        "load_state",
        "get_state_dict",
        "save_16bit_model",
        "save_checkpoint",
        "load_checkpoint",
        "gather_for_metrics",
    }
)
COLLECTIVE_METHODS = TORCH_COLLECTIVE_METHODS | FRAMEWORK_COLLECTIVE_METHODS
# Method names that are too common to match alone, matched when the receiver's name says what it is
# (`self.accelerator.gather(t)`, `fabric.save(p, state)`). Every process must call them:
# accelerate Accelerator.save_model / gather / reduce (accelerate/accelerator.py), transformers
# Trainer.save_model (trainer.py: it gathers DeepSpeed/FSDP state itself and writes on process zero),
# Lightning Fabric.save / Fabric.barrier (lightning/fabric/fabric.py) and Strategy.barrier.
RECEIVER_COLLECTIVES: dict[str, tuple[str, ...]] = {
    "save_model": ("accelerator", "trainer"),
    "gather": ("accelerator",),
    "reduce": ("accelerator",),
    "save": ("fabric",),
    "barrier": ("fabric", "strategy", "accelerator"),
}

# --- byte markers for the prefilter (ckptfix.api.might_need_work) ----------------------------------------
# A write, barrier or process-group finding needs one of these words in the file.
WRITE_MARKERS = (b"save", b"barrier", b"process_group")
# A CKP006 finding needs a collective (or DDP's backward, for rank-0-only loop exits) ...
COLLECTIVE_MARKERS = (
    b"all_reduce",
    b"all_gather",
    b"all_to_all",
    b"broadcast",
    b"gather",
    b"scatter",
    b"reduce",
    b"send",
    b"recv",
    b"new_group",
    b"new_subgroups",
    b"device_mesh",
    b"checkpoint",
    b"state_dict",
    b"full_tensor",
    b"redistribute",
    b"summon_full_params",
    b"wait_for_everyone",
    b"load_state",
    b"backward",
    b"synchronize",
    b"final_sync",
)
# ... and a main-process guard, looked for in the lower-cased text (`Rank`, `SLURM_PROCID`).
GUARD_MARKERS = (
    b"rank",
    b"procid",
    b"localid",
    b"main",
    b"master",
    b"chief",
    b"primary",
    b"zero",
    b"root",
    b"gpu",
    b"device_id",
    b"process_index",
    b"ordinal",
)
