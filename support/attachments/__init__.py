"""Attachments: files (images and PDF) customers, agents and tickets attach to a conversation.

:mod:`.validation` decides from the bytes alone what a file is and re-encodes images; :mod:`.storage`
keeps the bytes on disk or in an S3-compatible store; :mod:`.service` records them in SQL, checks who may
read them, lists and erases them with the customer's data, and renders them for the model.
"""
