"""A procedural portrait world with exact ground truth: stylised faces, performances, datasets.

Import the parts from their modules (``render``, ``performance``, ``dataset``, ``motion_encoder``);
this package import stays light (numpy and OpenCV only, no torch).
"""
