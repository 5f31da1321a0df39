"""See DESIGN.md, section Rooms."""
