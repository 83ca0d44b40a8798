"""Every plot and display panel of the project, for notebooks, the demo and the README (one home)."""

from avatarme_edu.figures.lightstage import flat_preview, gradient_image_panels, plot_light_stage, separation_panels
from avatarme_edu.figures.maps import (draw_window_grid, psnr_bar_chart, show_images, show_maps, to_display,
                                       transfer_figure)
from avatarme_edu.figures.meshes import plot_head, plot_uv_layout

__all__ = [
    "flat_preview", "gradient_image_panels", "plot_light_stage", "separation_panels", "draw_window_grid",
    "psnr_bar_chart", "show_images", "show_maps", "to_display", "transfer_figure", "plot_head", "plot_uv_layout",
]
