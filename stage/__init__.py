"""The stage: a live web view of the jam for a projector or a tablet, with steering and a treat button.

It watches a brain over the wire (role ``stage``) and serves a page; it never
talks to a rig directly and never imports torch.
"""
