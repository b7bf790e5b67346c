"""The Hugging Face PyTorch Swin as the reference for parity tests."""

import numpy as np
import torch
from transformers import SwinConfig, SwinForImageClassification

import keras_swin
from keras_swin.checkpoints.swin import official_to_keras, to_official_layout


def hf_reference(
    embed_dim=32, depths=(2, 2), num_heads=(2, 4), window_size=4, num_labels=10, seed=0
):
    """A randomly initialised HF Swin classifier whose norms, biases and bias tables are
    perturbed away from their init, so that a wrong mapping shows in the outputs."""
    torch.manual_seed(seed)
    config = SwinConfig(
        image_size=224,
        patch_size=4,
        embed_dim=embed_dim,
        depths=list(depths),
        num_heads=list(num_heads),
        window_size=window_size,
        num_labels=num_labels,
        drop_path_rate=0.0,
    )
    return _perturbed(SwinForImageClassification(config).eval(), "relative_position_bias_table")


def _perturbed(model, *also):
    """`model` with its biases, norms and the parameters named by `also` moved off their
    initialisation by N(0, 0.5), so that a wrong mapping of any of them shows."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") or "norm" in name or any(part in name for part in also):
                param.add_(torch.randn_like(param) * 0.5)
    return model


def _nchw(images_nhwc):
    return torch.from_numpy(np.ascontiguousarray(np.transpose(images_nhwc, (0, 3, 1, 2))))


# The Swin-T architecture (the paper's table), for the full-size parity, preset and CLI tests.
SWIN_T = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24))


def hf_swin_t():
    """The ImageNet Swin-T (window 7, 1,000 classes) from `hf_reference`: the same weights at
    every call (seed 0).

    A new one each time: a Hugging Face Swin (V1) classifier is stateful. A stage whose map
    fits in one window sets its blocks' `shift_size` to 0 for good (`SwinLayer.
    set_shift_and_window_size`), so after a 224x224 image (stage 4: 7x7) it gets a 230x300
    one (8x10) wrong by 0.05; a keras_swin model keeps no such state."""
    return hf_reference(**SWIN_T, window_size=7, num_labels=1000)


def hf_state_dict(model):
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


def hf_outputs(model, images_nhwc):
    """Logits and the stage outputs before merging (P2..), NHWC, for normalised images."""
    pixel_values = _nchw(images_nhwc)
    stage_outputs = []

    def hook(module, inputs, output):
        stage_outputs.append(output)

    trunk = model.swinv2 if hasattr(model, "swinv2") else model.swin
    handles = [stage.blocks[-1].register_forward_hook(hook) for stage in trunk.encoder.layers]
    try:
        with torch.no_grad():
            logits = model(pixel_values=pixel_values).logits.numpy()
    finally:
        for handle in handles:
            handle.remove()
    pyramid = {}
    height, width = -(-images_nhwc.shape[1] // 4), -(-images_nhwc.shape[2] // 4)
    for stage, output in enumerate(stage_outputs):
        # The last block's output: (B, H*W, C) at the stage resolution, before merging.
        before_merge = output[0] if isinstance(output, tuple) else output
        pyramid[f"P{stage + 2}"] = before_merge.numpy().reshape(
            images_nhwc.shape[0], height, width, -1
        )
        height, width = -(-height // 2), -(-width // 2)
    return logits, pyramid


def assert_parity(keras_model, hf, images, atol=1e-4):
    """A keras_swin classifier against its HF reference: logits and every pyramid level."""
    import keras

    logits, pyramid = hf_outputs(hf, images)
    extractor = keras.Model(keras_model.input, [keras_model.output, keras_model.pyramid_outputs])
    out, features = extractor(images)
    np.testing.assert_allclose(out, logits, atol=atol)
    assert sorted(features) == sorted(pyramid)
    for level in pyramid:
        np.testing.assert_allclose(features[level], pyramid[level], atol=atol, err_msg=level)


def _architecture(config):
    """The keras_swin arguments of a Hugging Face Swin (V1 or V2) configuration."""
    return dict(patch_size=config.patch_size, embed_dim=config.embed_dim, depths=config.depths,
                num_heads=config.num_heads, window_size=config.window_size)


def keras_like(model, **kwargs):
    """An untrained keras_swin classifier (SwinTransformerV2 for a Swinv2 model) with the HF
    model's architecture, taking normalised images and giving logits; `kwargs` override
    any argument."""
    config = model.config
    arguments = dict(
        **_architecture(config),
        include_top=True,
        classes=config.num_labels,
        classifier_activation=None,
        include_preprocessing=False,
    )
    if hasattr(model, "swinv2"):
        arguments["pretrained_window_sizes"] = config.pretrained_window_sizes
        return keras_swin.SwinTransformerV2(**{**arguments, **kwargs})
    return keras_swin.SwinTransformer(**{**arguments, **kwargs})


def keras_from_hf(model, **kwargs):
    """The keras_swin classifier (V1 or V2) with the HF model's weights, taking normalised images."""
    keras_model = keras_like(model, **kwargs)
    state, layout = to_official_layout(hf_state_dict(model))
    official_to_keras(keras_model, state, layout)
    return keras_model


def hf_upernet_reference(
    embed_dim=32,
    depths=(2, 2, 2, 2),
    num_heads=(1, 2, 4, 8),
    window_size=4,
    hidden_size=64,
    auxiliary_channels=32,
    num_labels=5,
    use_auxiliary_head=True,
    seed=0,
):
    """A randomly initialised HF UperNetForSemanticSegmentation with a Swin backbone, with
    norms, biases, bias tables and BatchNorm running statistics moved off their init."""
    from transformers import UperNetConfig, UperNetForSemanticSegmentation

    torch.manual_seed(seed)
    backbone = SwinConfig(
        embed_dim=embed_dim,
        depths=list(depths),
        num_heads=list(num_heads),
        window_size=window_size,
        drop_path_rate=0.0,
        out_features=[f"stage{i + 1}" for i in range(len(depths))],
    )
    config = UperNetConfig(
        backbone_config=backbone,
        hidden_size=hidden_size,
        auxiliary_channels=auxiliary_channels,
        auxiliary_in_channels=embed_dim * 4,
        num_labels=num_labels,
        use_auxiliary_head=use_auxiliary_head,
    )
    model = _perturbed(UperNetForSemanticSegmentation(config).eval(), "relative_position_bias_table")
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.add_(torch.randn_like(buffer) * 0.3)
            elif name.endswith("running_var"):
                buffer.mul_(torch.rand_like(buffer) + 0.5)
    return model


def hf_upernet_outputs(model, images_nhwc):
    """`(logits, auxiliary_logits or None)` NHWC at the image size, for normalised images."""
    pixel_values = _nchw(images_nhwc)
    with torch.no_grad():
        logits = model(pixel_values=pixel_values).logits
        auxiliary = None
        if model.auxiliary_head is not None:
            auxiliary = model.auxiliary_head(model.backbone(pixel_values).feature_maps)
            auxiliary = torch.nn.functional.interpolate(
                auxiliary, size=pixel_values.shape[2:], mode="bilinear", align_corners=False
            )
    to_nhwc = lambda t: None if t is None else t.numpy().transpose(0, 2, 3, 1)  # noqa: E731
    return to_nhwc(logits), to_nhwc(auxiliary)


def keras_upernet_like(model, **kwargs):
    """An untrained keras_swin UPerNet with the HF model's architecture (normalised input)."""
    config = model.config
    backbone_config = config.backbone_config
    backbone = keras_swin.SwinTransformer(
        **_architecture(backbone_config),
        include_preprocessing=False,
        pyramid_norm=True,
        include_final_norm=False,
        always_partition=True,
    )
    return keras_swin.UPerNet(
        backbone,
        num_classes=kwargs.pop("num_classes", config.num_labels),
        channels=config.hidden_size,
        auxiliary_head=kwargs.pop("auxiliary_head", config.use_auxiliary_head),
        auxiliary_channels=config.auxiliary_channels,
        **kwargs,
    )


def hf_v2_reference(
    embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window_size=8, pretrained_window_sizes=(0, 0, 0, 0),
    image_size=256, num_labels=10, seed=0,
):
    """A randomly initialised HF Swinv2ForImageClassification with norms, biases, logit
    scales and CPB MLPs perturbed away from their init. `image_size` decides HF's window
    per stage (it shrinks the window where a stage's map is smaller)."""
    from transformers import Swinv2Config, Swinv2ForImageClassification

    torch.manual_seed(seed)
    config = Swinv2Config(
        image_size=image_size, embed_dim=embed_dim, depths=list(depths), num_heads=list(num_heads),
        window_size=window_size, pretrained_window_sizes=list(pretrained_window_sizes),
        num_labels=num_labels, drop_path_rate=0.0,
    )
    return _perturbed(Swinv2ForImageClassification(config).eval(), "logit_scale", "continuous_position")


def torch_resize_bilinear(images_nhwc, size):
    """`torch.nn.functional.interpolate(mode="bilinear", align_corners=False)` to `size`, NHWC."""
    out = torch.nn.functional.interpolate(_nchw(images_nhwc), size=tuple(size), mode="bilinear", align_corners=False)
    return out.numpy().transpose(0, 2, 3, 1)


def torch_adaptive_average_pool(images_nhwc, bins):
    """`torch.nn.functional.adaptive_avg_pool2d(x, bins)`, NHWC."""
    return torch.nn.functional.adaptive_avg_pool2d(_nchw(images_nhwc), bins).numpy().transpose(0, 2, 3, 1)
