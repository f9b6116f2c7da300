"""The shipped hardware targets, one folder each: `<name>/<name>.toml`, an optional `<name>.egg`,
and, where the vendor's library has its own tiling, that library's baseline schedule as a package
that registers it by name (`isamap.schedule.registry`). The target file schema is README.md here.
"""
