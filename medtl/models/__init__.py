"""Models: the architecture table, weight sources, head surgery, truncation, RI/WT/ST.

    import medtl.models as M
    net = M.create("resnet18", num_classes=8, weights="imagenet")      # torchvision cache
    net = M.create("densenet121", num_classes=2, in_chans=1, stem="cifar", image_size=28)
    net = M.create("resnet50", num_classes=2, weights="moco.pth", method="moco-v2")
    M.save_source(net, "blood-r18", normalize="medmnist", source_data="bloodmnist")
    net = M.create("resnet18", num_classes=2, weights="source:blood-r18")
"""

from ._create import create, load_checkpoint, load_source
from .foundation import (
    FOUNDATION,
    LOADERS,
    Foundation,
    FoundationModel,
    foundation_dir,
    foundation_table,
    is_foundation,
    load_foundation,
    radimagenet_remap,
    register_foundation,
    unregister_foundation,
)
from .inits import (
    BYOL_STATE_FIELDS,
    CATEGORIES,
    FORMATS,
    INITS,
    Init,
    byol_state_dict,
    convert_byol,
    convert_simclr,
    fetch,
    get_init,
    init_file,
    inits_table,
    is_init,
    read_byol,
    register_init,
)
from .profile import complexity
from .surgery import (
    NORM_TYPES,
    TRUNCATIONS,
    Truncated,
    adapt_in_chans,
    arch_of,
    cut_points,
    freeze,
    frozen,
    lwft_freeze,
    new_head,
    reinit,
    replace_head,
    resnet_sequence,
    slim,
    st_groups,
    st_sample,
    truncate,
    truncated_path,
    unfreeze,
)
from .tf_checkpoint import SIMCLR_DEPTHS, read_tf_checkpoint, simclr_modules, simclr_state_dict
from .unet import UNET_MULTIPLE, unet, unet_encoders
from .weights import (
    SSL_DROP_SUBSTRINGS,
    SSL_PREFIXES,
    LoadReport,
    check_source_name,
    imagenet_file,
    imagenet_state_dict,
    imagenet_weights,
    list_sources,
    load_state,
    models_dir,
    read_checkpoint,
    remap,
    save_source,
    source_info,
    strip_prefix,
    unwrap,
    weights_cache,
)
from .zoo import (
    ARCHS,
    SMALL_STEMS,
    STUDY_KEYS,
    ArchSpec,
    all_layer_names,
    build,
    get_module,
    register_arch,
    set_module,
    slim_resnet50,
    spec,
    under,
)

__all__ = [
    "BYOL_STATE_FIELDS", "byol_state_dict", "convert_byol", "convert_simclr", "read_byol", "read_tf_checkpoint", "simclr_state_dict", "simclr_modules", "SIMCLR_DEPTHS", "CATEGORIES", "FORMATS", "INITS", "Init", "fetch", "get_init", "init_file", "inits_table", "is_init",
    "register_init", "weights_cache",
    "FOUNDATION", "LOADERS", "Foundation", "FoundationModel", "foundation_dir", "foundation_table", "is_foundation",
    "load_foundation", "radimagenet_remap", "register_foundation", "unregister_foundation", "UNET_MULTIPLE", "unet", "unet_encoders",
    "ARCHS", "NORM_TYPES", "SMALL_STEMS", "SSL_DROP_SUBSTRINGS", "SSL_PREFIXES", "STUDY_KEYS", "TRUNCATIONS",
    "ArchSpec", "LoadReport", "Truncated", "adapt_in_chans", "all_layer_names", "arch_of", "build", "complexity", "create",
    "cut_points", "freeze", "frozen", "get_module", "imagenet_file", "imagenet_state_dict", "imagenet_weights",
    "list_sources", "load_checkpoint", "lwft_freeze", "load_source", "load_state", "models_dir", "new_head", "read_checkpoint",
    "register_arch", "reinit", "remap", "replace_head", "resnet_sequence", "save_source", "set_module",
    "check_source_name",
    "slim", "slim_resnet50", "source_info", "spec", "st_groups", "st_sample", "strip_prefix", "truncate", "truncated_path",
    "under", "unfreeze", "unwrap",
]
