"""Every plot and display panel of the project, for notebooks, the demo and the README (one home)."""

from avatarme_edu.public import public_face

# public name -> its module (loaded on first use, see avatarme_edu.public)
_HOMES = {
    "compare_maps": "compare", "detail_gain": "compare", "error_map": "compare", "normal_detail": "compare",
    "region_box": "compare", "zoom_crops": "compare", "metrics_table": "tables", "loss_curve": "training",
    "train_live": "training",
    "flat_preview": "lightstage", "gradient_image_panels": "lightstage", "plot_light_stage": "lightstage",
    "separation_panels": "lightstage", "draw_window_grid": "maps", "psnr_bar_chart": "maps", "show_images": "maps",
    "show_maps": "maps", "to_display": "maps", "transfer_figure": "maps", "plot_head": "meshes",
    "plot_uv_layout": "meshes", "avatar_gallery": "gallery", "stage_times_figure": "gallery",
    "cross_photo_figure": "gallery",
}
__all__ = list(_HOMES)
__getattr__, __dir__ = public_face(__name__, _HOMES)
