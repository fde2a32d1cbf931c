"""Representation analyses (seed 003): how similar are two layers' features?"""
