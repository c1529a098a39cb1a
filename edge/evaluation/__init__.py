"""Accuracy measurements behind ``edge eval``, split by job.

``labels`` reads a labelled folder and groups faces by their labels, ``outcomes`` runs the analyzer
on each image and picks the labelled face, ``stats`` holds the estimates with their confidence
intervals, ``accuracy``, ``parity`` and ``face_size`` compute one kind of result each as typed rows
(``to_dict`` gives the JSON), ``report`` renders them as Markdown tables and ``clips`` scores the
daemon's counting on labelled videos. ``edge.commands.evaluate`` is the command that drives them.
"""
