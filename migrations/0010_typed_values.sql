-- Typed flag values (FlagDefined v4 / FlagUpdated v3, VariantSelected): what a flag's
-- variants hold, and what each level serves when it is on. Added at the end of each table,
-- so the projector's `LIKE` staging tables and its `INSERT … SELECT *` keep their column order.
--
-- flags: `value_type` (boolean, string, integer, float, object); a typed flag's variants with
-- their values (`variant_values`, JSON object name → value: `values` is an SQL keyword), the
-- variant a level that turns the flag on serves (`default_variant`) and the one served when it
-- is off (`off_variant`). A boolean flag has the implicit on/off variants: '{}' and NULLs.
-- system_defaults, overrides: the level's selection, one variant (`variant`) or a weighted
-- split (`split`, JSON [{"name", "weight"}] summing to 1000); both NULL: the flag's default.

ALTER TABLE flags
    ADD COLUMN value_type      text  NOT NULL DEFAULT 'boolean'
        CHECK (value_type IN ('boolean', 'string', 'integer', 'float', 'object')),
    ADD COLUMN variant_values  jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN default_variant text,
    ADD COLUMN off_variant     text;

ALTER TABLE system_defaults
    ADD COLUMN variant text,
    ADD COLUMN split   jsonb,
    ADD CONSTRAINT system_defaults_one_selection CHECK (variant IS NULL OR split IS NULL);

ALTER TABLE overrides
    ADD COLUMN variant text,
    ADD COLUMN split   jsonb,
    ADD CONSTRAINT overrides_one_selection CHECK (variant IS NULL OR split IS NULL);
