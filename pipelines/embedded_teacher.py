"""Former home of the embedded teacher: configs written for wave 1 name ``pipelines.embedded_teacher.EmbeddedTeacher``.
It lives in ``pipelines.world.teacher``; this alias keeps those configs working."""
from pipelines.world.teacher import EmbeddedTeacher, load_shipped_teacher, load_teacher_dir, save_trunk_weights

__all__ = ["EmbeddedTeacher", "load_shipped_teacher", "load_teacher_dir", "save_trunk_weights"]
