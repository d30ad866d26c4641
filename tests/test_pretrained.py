import dataclasses

import pytest
import torch

from conftest import CONFIGS
from mcuformer.errors import CheckpointError
from mcuformer.space import SearchSpace
from mcuformer.supernet import SuperViT, ViT
from mcuformer.supernet.pretrained import load_dense_pretrained


@pytest.fixture
def dense_vit(tmp_path):
    """A 'pretrained' dense ViT in timm's state-dict layout (our ViT uses the same key names)."""
    torch.manual_seed(0)
    space = dataclasses.replace(SearchSpace.load(CONFIGS / "cifar10-tiny.yaml"), rank_ratio=[1.0], patch_size=[4])
    arch = space.largest()
    ref = ViT(arch).eval()
    for p in ref.parameters():
        torch.nn.init.normal_(p, std=0.1)
    path = tmp_path / "deit.pth"
    torch.save({"model": ref.state_dict()}, path)
    return space, arch, ref, path


def test_dense_checkpoint_loads_exactly(dense_vit):
    space, arch, ref, path = dense_vit
    net = SuperViT(space).eval()
    report = load_dense_pretrained(net, path)
    assert report["layout"] == "timm" and "head" in report["loaded"]
    x = torch.randn(2, 3, 32, 32)
    net.set_active_subnet(arch)
    torch.testing.assert_close(net(x), ref(x), atol=1e-6, rtol=0)


def test_svd_init_full_rank_reproduces_and_low_rank_approximates(dense_vit):
    space, arch, ref, path = dense_vit
    low = dataclasses.replace(space, rank_ratio=[0.5, 1.0])
    net = SuperViT(low).eval()
    load_dense_pretrained(net, path)
    x = torch.randn(2, 3, 32, 32)
    net.set_active_subnet(arch)  # rank ratio 1.0: the two factors multiply back to the dense matrix
    torch.testing.assert_close(net(x), ref(x), atol=1e-5, rtol=0)
    # rank 0.5: each block linear is the best rank-r approximation of the pretrained matrix
    fc1 = net.blocks[0].mlp.fc1
    fc1.configure(arch.embed_dim, arch.mlp_dim(0), int(0.5 * arch.embed_dim))
    w, down, _ = fc1.active_weights()
    dense = ref.blocks[0].mlp.fc1.weight.double()
    s = torch.linalg.svdvals(dense)
    err = torch.linalg.norm(dense - w.double() @ down.double())
    torch.testing.assert_close(err, s[int(0.5 * arch.embed_dim):].square().sum().sqrt(), atol=1e-4, rtol=1e-4)


def test_autoformer_layout_with_interleaved_qkv(dense_vit):
    space, arch, ref, path = dense_vit
    sd = ref.state_dict()
    af = {}
    for k, v in sd.items():
        k2 = (k.replace("patch_embed.", "patch_embed_super.").replace(".norm1.", ".attn_layer_norm.")
              .replace(".norm2.", ".ffn_layer_norm.").replace(".mlp.", "."))
        if ".attn.qkv.weight" in k:  # AutoFormer stores q, k, v rows interleaved (its bias is not)
            v = v.view(3, v.shape[0] // 3, *v.shape[1:]).transpose(0, 1).reshape(v.shape)
        af[k2] = v
    af_path = path.with_name("autoformer.pth")
    torch.save({"model": af}, af_path)
    net = SuperViT(space).eval()
    assert load_dense_pretrained(net, af_path)["layout"] == "autoformer"
    net.set_active_subnet(arch)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(net(x), ref(x), atol=1e-6, rtol=0)


def test_other_patch_size_and_grid_are_resized(dense_vit):
    space, arch, ref, path = dense_vit
    other = dataclasses.replace(space, patch_size=[4, 8])
    net = SuperViT(other)
    load_dense_pretrained(net, path)
    # patch 8 stem: a flat patch gives the same response as the pretrained patch-4 kernel
    flat = torch.ones(1, 3, 8, 8)
    k4 = ref.patch_embed.proj.weight.sum(dim=(1, 2, 3))  # response of the patch-4 kernel to a flat patch
    k8 = torch.nn.functional.conv2d(flat, net.patch_embeds["8"].proj.weight).flatten()
    torch.testing.assert_close(k8[: k4.numel()], k4, atol=1e-4, rtol=1e-4)
    assert net.pos_embeds["8"].shape[1] == 16


def test_unrecognised_or_pickled_file_is_a_clear_error(tmp_path):
    net = SuperViT(SearchSpace.load(CONFIGS / "cifar10-tiny.yaml"))
    p = tmp_path / "x.pth"
    torch.save({"model": {"foo.weight": torch.zeros(2)}}, p)
    with pytest.raises(CheckpointError, match="unrecognised"):
        load_dense_pretrained(net, p)
    p.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot load"):
        load_dense_pretrained(net, p)
