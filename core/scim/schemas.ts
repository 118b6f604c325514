/**
 * SCIM schemas (RFC 7643 §2, §4, §7, §8.7): the attribute definitions of User, the Enterprise User
 * extension, Group, and any custom extension declared in configuration. Everything that depends on
 * attribute characteristics (filtering, PATCH, projection, `/Schemas`) reads them from here.
 *
 * Attribute names are case-insensitive in SCIM (RFC 7643 §2.1); {@link SchemaRegistry.resolve}
 * looks them up case-insensitively and returns the canonical spelling, which is the spelling the
 * gateway stores.
 */

/**
 * Longest value, in UTF-8 bytes, of the attributes PostgreSQL keeps in a B-tree index: `userName`
 * (unique on `lower(user_name)`), `externalId` and Group `displayName` (unique on
 * `lower(display_name)`). A B-tree entry must fit in a third of an 8 KiB page (2,704 bytes), and
 * `lower()` can lengthen some characters (U+023A, 2 bytes, becomes U+2C65, 3 bytes); 1,024 bytes
 * stays well inside that whatever the script, and is far above what identity providers send
 * (Entra ID caps a userPrincipalName at 113 characters, an email address has at most 254).
 */
export const MAX_INDEXED_VALUE_BYTES = 1024;

/**
 * Longest value, in UTF-8 bytes, of any other string attribute. Every value travels in audit
 * events, outbox messages and workflow payloads; 64 KiB is far beyond any real name, address or
 * certificate (`x509Certificates.value`) and keeps one attribute from filling those.
 */
export const MAX_VALUE_BYTES = 65_536;

export type AttributeType = 'string' | 'boolean' | 'decimal' | 'integer' | 'dateTime' | 'binary' | 'reference' | 'complex';
export type Mutability = 'readOnly' | 'readWrite' | 'immutable' | 'writeOnly';
export type Returned = 'always' | 'never' | 'default' | 'request';
export type Uniqueness = 'none' | 'server' | 'global';

/** An attribute definition in the shape RFC 7643 §7 publishes it. */
export interface AttributeDef {
  name: string;
  type: AttributeType;
  multiValued: boolean;
  description: string;
  required: boolean;
  caseExact: boolean;
  mutability: Mutability;
  returned: Returned;
  uniqueness: Uniqueness;
  canonicalValues?: string[];
  referenceTypes?: string[];
  subAttributes?: AttributeDef[];
}

export interface SchemaDef {
  id: string;
  name: string;
  description: string;
  attributes: AttributeDef[];
}

export interface ResourceTypeDef {
  id: string;
  name: string;
  endpoint: string;
  description: string;
  schema: string;
  schemaExtensions: Array<{ schema: string; required: boolean }>;
}

export const USER_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:User';
export const GROUP_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:Group';
export const ENTERPRISE_USER_SCHEMA = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';
export const LIST_RESPONSE_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:ListResponse';
export const PATCH_OP_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
export const SEARCH_REQUEST_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:SearchRequest';
export const BULK_REQUEST_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:BulkRequest';
export const BULK_RESPONSE_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:BulkResponse';

type AttrOpts = Partial<Omit<AttributeDef, 'name'>>;

/** Builds a definition with RFC 7643 §2.2's defaults (string, single, not required, not caseExact, readWrite, default, none). */
export function attr(name: string, opts: AttrOpts = {}): AttributeDef {
  return {
    name,
    type: opts.subAttributes ? 'complex' : 'string',
    multiValued: false,
    description: '',
    required: false,
    caseExact: false,
    mutability: 'readWrite',
    returned: 'default',
    uniqueness: 'none',
    ...opts,
  };
}

/** A multi-valued complex attribute with the usual value/display/type/primary sub-attributes. */
function plural(name: string, description: string, types: string[] | undefined, valueOpts: AttrOpts = {}): AttributeDef {
  return attr(name, {
    multiValued: true,
    description,
    subAttributes: [
      attr('value', { description: `The ${name} value.`, ...valueOpts }),
      attr('display', { description: 'A human-readable name, primarily used for display purposes.' }),
      attr('type', { description: 'A label indicating the function of the value.', ...(types ? { canonicalValues: types } : {}) }),
      attr('primary', { type: 'boolean', description: 'Whether this is the primary value of the attribute.' }),
    ],
  });
}

/** id, externalId and meta: common to every resource (RFC 7643 §3.1). Not part of any schema's attribute list. */
export const COMMON_ATTRIBUTES: AttributeDef[] = [
  attr('id', { caseExact: true, mutability: 'readOnly', returned: 'always', uniqueness: 'server', description: 'Unique identifier assigned by the service provider.' }),
  attr('externalId', { caseExact: true, description: `Identifier of the resource as defined by the provisioning client. At most ${MAX_INDEXED_VALUE_BYTES} bytes (UTF-8).` }),
  attr('meta', {
    mutability: 'readOnly',
    description: 'Resource metadata.',
    subAttributes: [
      attr('resourceType', { caseExact: true, mutability: 'readOnly' }),
      attr('created', { type: 'dateTime', mutability: 'readOnly' }),
      attr('lastModified', { type: 'dateTime', mutability: 'readOnly' }),
      attr('location', { type: 'reference', referenceTypes: ['uri'], caseExact: true, mutability: 'readOnly' }),
      attr('version', { caseExact: true, mutability: 'readOnly' }),
    ],
  }),
];

export const USER_SCHEMA_DEF: SchemaDef = {
  id: USER_SCHEMA,
  name: 'User',
  description: 'User Account',
  attributes: [
    attr('userName', { required: true, uniqueness: 'server', description: `Unique identifier for the User, used by the user to authenticate. Unique case-insensitively. At most ${MAX_INDEXED_VALUE_BYTES} bytes (UTF-8).` }),
    attr('name', {
      description: "The components of the user's real name.",
      subAttributes: [
        attr('formatted', { description: 'The full name, formatted for display.' }),
        attr('familyName', { description: 'The family name (last name).' }),
        attr('givenName', { description: 'The given name (first name).' }),
        attr('middleName', { description: 'The middle name(s).' }),
        attr('honorificPrefix', { description: 'Honorific prefix(es), e.g. "Ms.".' }),
        attr('honorificSuffix', { description: 'Honorific suffix(es), e.g. "III".' }),
      ],
    }),
    attr('displayName', { description: 'The name of the User, suitable for display.' }),
    attr('nickName', { description: 'The casual way to address the user.' }),
    attr('profileUrl', { type: 'reference', referenceTypes: ['external'], description: "A URI to the user's online profile." }),
    attr('title', { description: "The user's title, such as \"Vice President\"." }),
    attr('userType', { description: 'The relationship between the organization and the user, e.g. "Employee".' }),
    attr('preferredLanguage', { description: 'Preferred written or spoken language (RFC 7231 Accept-Language syntax).' }),
    attr('locale', { description: 'Default location for localizing, e.g. "en-US".' }),
    attr('timezone', { description: 'Time zone in IANA format, e.g. "America/Los_Angeles".' }),
    attr('active', { type: 'boolean', description: "The user's administrative status; false deprovisions the user." }),
    attr('password', { mutability: 'writeOnly', returned: 'never', description: 'Accepted on write, never stored in clear nor returned.' }),
    plural('emails', 'Email addresses for the user.', ['work', 'home', 'other']),
    plural('phoneNumbers', 'Phone numbers for the user.', ['work', 'home', 'mobile', 'fax', 'pager', 'other']),
    plural('ims', 'Instant messaging addresses for the user.', ['aim', 'gtalk', 'icq', 'xmpp', 'msn', 'skype', 'qq', 'yahoo']),
    plural('photos', 'URLs of photos of the user.', ['photo', 'thumbnail'], { type: 'reference', referenceTypes: ['external'], caseExact: true }),
    attr('addresses', {
      multiValued: true,
      description: 'Physical mailing addresses for the user.',
      subAttributes: [
        attr('formatted', { description: 'The full mailing address, formatted for display.' }),
        attr('streetAddress', { description: 'The full street address component.' }),
        attr('locality', { description: 'The city or locality component.' }),
        attr('region', { description: 'The state or region component.' }),
        attr('postalCode', { description: 'The zip code or postal code component.' }),
        attr('country', { description: 'The country name component (ISO 3166-1 alpha-2).' }),
        attr('type', { canonicalValues: ['work', 'home', 'other'], description: 'A label indicating the function of the address.' }),
        attr('primary', { type: 'boolean', description: 'Whether this is the primary address.' }),
      ],
    }),
    attr('groups', {
      multiValued: true,
      mutability: 'readOnly',
      description: 'Groups the user belongs to, directly or through nested groups. Changed through the Group resource.',
      subAttributes: [
        attr('value', { mutability: 'readOnly', description: 'The id of the Group.' }),
        attr('$ref', { type: 'reference', referenceTypes: ['Group'], mutability: 'readOnly', description: 'The URI of the Group.' }),
        attr('display', { mutability: 'readOnly', description: "The Group's displayName." }),
        attr('type', { mutability: 'readOnly', canonicalValues: ['direct', 'indirect'], description: 'direct or indirect membership.' }),
      ],
    }),
    plural('entitlements', 'Entitlements for the user.', undefined),
    plural('roles', 'Roles for the user.', undefined),
    plural('x509Certificates', 'X.509 certificates issued to the user.', undefined, { type: 'binary', caseExact: true }),
  ],
};

export const ENTERPRISE_USER_SCHEMA_DEF: SchemaDef = {
  id: ENTERPRISE_USER_SCHEMA,
  name: 'EnterpriseUser',
  description: 'Enterprise User',
  attributes: [
    attr('employeeNumber', { description: 'Numeric or alphanumeric identifier assigned by the organization.' }),
    attr('costCenter', { description: 'Name of a cost center.' }),
    attr('organization', { description: 'Name of an organization.' }),
    attr('division', { description: 'Name of a division.' }),
    attr('department', { description: 'Name of a department.' }),
    attr('manager', {
      description: "The user's manager.",
      subAttributes: [
        attr('value', { caseExact: true, description: 'The id of the manager User.' }),
        attr('$ref', { type: 'reference', referenceTypes: ['User'], description: 'The URI of the manager User.' }),
        attr('displayName', { mutability: 'readOnly', description: "The manager's displayName." }),
      ],
    }),
  ],
};

export const GROUP_SCHEMA_DEF: SchemaDef = {
  id: GROUP_SCHEMA,
  name: 'Group',
  description: 'Group',
  attributes: [
    attr('displayName', { required: true, uniqueness: 'server', description: `A human-readable name for the Group; unique case-insensitively. At most ${MAX_INDEXED_VALUE_BYTES} bytes (UTF-8).` }),
    attr('members', {
      multiValued: true,
      description: 'Members of the Group: Users or other Groups (nested groups).',
      subAttributes: [
        attr('value', { mutability: 'immutable', description: 'The id of the member.' }),
        attr('$ref', { type: 'reference', referenceTypes: ['User', 'Group'], mutability: 'immutable', description: 'The URI of the member.' }),
        attr('display', { description: "The member's display name." }),
        attr('type', { mutability: 'immutable', canonicalValues: ['User', 'Group'], description: 'User or Group.' }),
      ],
    }),
  ],
};

/** A custom extension from configuration: the same shape as a SchemaDef, attributes with RFC defaults filled in. */
export interface CustomExtensionConfig {
  id: string;
  name?: string;
  description?: string;
  /** The resource type it extends: "User" or "Group". */
  resourceType: 'User' | 'Group';
  required?: boolean;
  attributes: Array<{ name: string } & AttrOpts & { subAttributes?: Array<{ name: string } & AttrOpts> }>;
}

/** Where an attribute path points, with canonical names. */
export interface ResolvedAttribute {
  /** Schema URN owning the attribute; undefined for id, externalId and meta. */
  schema: string | undefined;
  /** True when the attribute lives under the extension URN key in the resource. */
  extension: boolean;
  attribute: AttributeDef;
  subAttribute?: AttributeDef;
  /** Canonical path: `emails.value`, `urn:…:enterprise:2.0:User:manager.value`. */
  path: string;
}

const ATTR_NAME = /^[A-Za-z$][\w$-]*$/;

export class SchemaRegistry {
  private readonly schemas = new Map<string, SchemaDef>();
  private readonly resourceTypes = new Map<string, ResourceTypeDef>();
  private readonly resolved = new Map<string, ResolvedAttribute | undefined>();
  private readonly hidden = new Map<string, Set<string>>();

  constructor(extensions: CustomExtensionConfig[] = []) {
    for (const s of [USER_SCHEMA_DEF, ENTERPRISE_USER_SCHEMA_DEF, GROUP_SCHEMA_DEF]) this.schemas.set(s.id, s);
    const user: ResourceTypeDef = {
      id: 'User',
      name: 'User',
      endpoint: '/Users',
      description: 'User Account',
      schema: USER_SCHEMA,
      schemaExtensions: [{ schema: ENTERPRISE_USER_SCHEMA, required: false }],
    };
    const group: ResourceTypeDef = {
      id: 'Group',
      name: 'Group',
      endpoint: '/Groups',
      description: 'Group',
      schema: GROUP_SCHEMA,
      schemaExtensions: [],
    };
    this.resourceTypes.set('User', user);
    this.resourceTypes.set('Group', group);
    for (const ext of extensions) this.addExtension(ext);
  }

  private addExtension(ext: CustomExtensionConfig): void {
    if (!/^urn:[a-z0-9][a-z0-9-]{0,31}:[\w()+,\-.:=@;$!*'%/?#]+$/i.test(ext.id)) {
      throw new Error(`custom schema id "${ext.id}" is not a URN`);
    }
    if (this.schemas.has(ext.id)) throw new Error(`custom schema "${ext.id}" is declared twice`);
    const rt = this.resourceTypes.get(ext.resourceType);
    if (!rt) throw new Error(`custom schema "${ext.id}": unknown resourceType "${String(ext.resourceType)}"`);
    const toDef = (a: { name: string } & AttrOpts & { subAttributes?: Array<{ name: string } & AttrOpts> }): AttributeDef => {
      if (!ATTR_NAME.test(a.name)) throw new Error(`custom schema "${ext.id}": invalid attribute name "${a.name}"`);
      const { subAttributes, name, ...rest } = a;
      return attr(name, { ...rest, ...(subAttributes ? { subAttributes: subAttributes.map(toDef) } : {}) });
    };
    this.schemas.set(ext.id, {
      id: ext.id,
      name: ext.name ?? ext.id.slice(ext.id.lastIndexOf(':') + 1),
      description: ext.description ?? '',
      attributes: ext.attributes.map(toDef),
    });
    rt.schemaExtensions.push({ schema: ext.id, required: ext.required ?? false });
  }

  /**
   * Lower-cased top-level keys of a resource of this type under which something may sit that a plain
   * read must not show (returned "request" or "never"): core attribute names, and extension URNs
   * whose schema has such an attribute. A resource with none of these keys needs no projection.
   */
  hiddenKeys(resourceType: 'User' | 'Group'): ReadonlySet<string> {
    let keys = this.hidden.get(resourceType);
    if (!keys) {
      const rt = this.resourceType(resourceType);
      const hidden = (a: AttributeDef): boolean => a.returned === 'request' || a.returned === 'never' || (a.subAttributes ?? []).some(hidden);
      keys = new Set<string>();
      for (const a of this.schemas.get(rt.schema)!.attributes) if (hidden(a)) keys.add(a.name.toLowerCase());
      for (const { schema } of rt.schemaExtensions) if (this.schemas.get(schema)!.attributes.some(hidden)) keys.add(schema.toLowerCase());
      this.hidden.set(resourceType, keys);
    }
    return keys;
  }

  allSchemas(): SchemaDef[] {
    return [...this.schemas.values()];
  }

  schema(id: string): SchemaDef | undefined {
    for (const [key, s] of this.schemas) if (key.toLowerCase() === id.toLowerCase()) return s;
    return undefined;
  }

  allResourceTypes(): ResourceTypeDef[] {
    return [...this.resourceTypes.values()];
  }

  resourceType(name: 'User' | 'Group'): ResourceTypeDef {
    return this.resourceTypes.get(name)!;
  }

  /** Extension schema URNs a resource type accepts. */
  extensionsOf(resourceType: 'User' | 'Group'): string[] {
    return this.resourceType(resourceType).schemaExtensions.map((e) => e.schema);
  }

  /**
   * Resolves an attribute path (`userName`, `name.givenName`, `emails.value`,
   * `urn:ietf:params:scim:schemas:core:2.0:User:userName`, `urn:…:enterprise:2.0:User:manager.value`)
   * for a resource type, case-insensitively. Returns undefined for an unknown attribute.
   */
  resolve(resourceType: 'User' | 'Group', path: string): ResolvedAttribute | undefined {
    // Rendering and projecting every resource resolves the same few paths over and over.
    const key = `${resourceType}\u0000${path}`;
    if (this.resolved.has(key)) return this.resolved.get(key);
    const result = this.resolveUncached(resourceType, path);
    if (this.resolved.size >= 10_000) this.resolved.clear();
    this.resolved.set(key, result);
    return result;
  }

  private resolveUncached(resourceType: 'User' | 'Group', path: string): ResolvedAttribute | undefined {
    const rt = this.resourceType(resourceType);
    let schemaId: string | undefined;
    let rest = path;
    const lower = path.toLowerCase();
    for (const id of [rt.schema, ...rt.schemaExtensions.map((e) => e.schema)]) {
      if (lower.startsWith(`${id.toLowerCase()}:`)) {
        schemaId = id;
        rest = path.slice(id.length + 1);
        break;
      }
    }
    if (schemaId === undefined && lower.startsWith('urn:')) return undefined;
    const [name, sub, ...more] = rest.split('.');
    if (!name || more.length > 0) return undefined;

    const candidates: Array<{ schema: string | undefined; def: AttributeDef }> = [];
    if (schemaId === undefined || schemaId === rt.schema) {
      for (const def of COMMON_ATTRIBUTES) candidates.push({ schema: undefined, def });
      for (const def of this.schemas.get(rt.schema)!.attributes) candidates.push({ schema: rt.schema, def });
    } else {
      for (const def of this.schemas.get(schemaId)!.attributes) candidates.push({ schema: schemaId, def });
    }
    const found = candidates.find((c) => c.def.name.toLowerCase() === name.toLowerCase());
    if (!found) return undefined;
    const extension = found.schema !== undefined && found.schema !== rt.schema;
    const prefix = extension ? `${found.schema}:` : '';
    if (sub === undefined) return { schema: found.schema, extension, attribute: found.def, path: `${prefix}${found.def.name}` };
    const subDef = found.def.subAttributes?.find((s) => s.name.toLowerCase() === sub.toLowerCase());
    if (!subDef) return undefined;
    return { schema: found.schema, extension, attribute: found.def, subAttribute: subDef, path: `${prefix}${found.def.name}.${subDef.name}` };
  }
}
