"""Providers: one module per provider, behind one interface (base.Provider)."""
