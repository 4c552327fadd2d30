/// Which Wan2GP a command read and which catalog knowledge computed its files, as `plan
/// --json`, `show --json` and `models --json` report it. Plain values: Rendering does not
/// know the catalog.
public struct Wan2GPEntry: Codable, Equatable, Sendable {
    /// The checkout's commit when it is a git work tree.
    public var commit: String?
    public var wangpVersion: String?
    /// sha256 over the source files that decide which files Wan2GP downloads.
    public var fingerprint: String
    /// `known`, `traced`, `edited` or `fallback`.
    public var knowledgeKind: String
    /// A commit prefix, or `traced:<fingerprint prefix>`.
    public var knowledge: String
    public var knowledgeWangpVersion: String?
    /// For `edited` and `fallback`: why the files may be wrong and what to run.
    public var warning: String?

    enum CodingKeys: String, CodingKey {
        case commit, wangpVersion = "wangp_version", fingerprint, knowledgeKind = "knowledge_kind", knowledge,
             knowledgeWangpVersion = "knowledge_wangp_version", warning
    }

    public init(commit: String?, wangpVersion: String?, fingerprint: String, knowledgeKind: String, knowledge: String,
                knowledgeWangpVersion: String?, warning: String?) {
        self.commit = commit
        self.wangpVersion = wangpVersion
        self.fingerprint = fingerprint
        self.knowledgeKind = knowledgeKind
        self.knowledge = knowledge
        self.knowledgeWangpVersion = knowledgeWangpVersion
        self.warning = warning
    }
}

/// `wgpm show --json`, format_version 1.
public struct ShowDocument: Codable, Equatable, Sendable {
    public static let version = 1
    public struct File: Codable, Equatable, Sendable {
        public var path: String
        public var url: String
        public var role: String
        public var size: Int64?
        /// Written only when false: a file the definition needs that Wan2GP never downloads.
        public var wan2gpDownloads: Bool?

        enum CodingKeys: String, CodingKey { case path, url, role, size, wan2gpDownloads = "wan2gp_downloads" }

        public init(path: String, url: String, role: String, size: Int64?, downloadable: Bool) {
            self.path = path
            self.url = url
            self.role = role
            self.size = size
            wan2gpDownloads = downloadable ? nil : false
        }
    }
    public struct Settings: Codable, Equatable, Sendable {
        public var transformerQuantization: String
        public var textEncoderQuantization: String
        public var dtype: String
        public var sharedFiles: Bool
        public var allVariants: Bool

        enum CodingKeys: String, CodingKey {
            case transformerQuantization = "transformer_quantization", textEncoderQuantization = "text_encoder_quantization",
                 dtype, sharedFiles = "shared_files", allVariants = "all_variants"
        }

        public init(transformerQuantization: String, textEncoderQuantization: String, dtype: String, sharedFiles: Bool, allVariants: Bool) {
            self.transformerQuantization = transformerQuantization
            self.textEncoderQuantization = textEncoderQuantization
            self.dtype = dtype
            self.sharedFiles = sharedFiles
            self.allVariants = allVariants
        }
    }
    public var formatVersion = Self.version
    public var model: String
    public var settings: Settings
    public var wan2gp: Wan2GPEntry?
    public var files: [File]

    enum CodingKeys: String, CodingKey { case formatVersion = "format_version", model, settings, wan2gp, files }

    public init(model: String, settings: Settings, wan2gp: Wan2GPEntry?, files: [File]) {
        self.model = model
        self.settings = settings
        self.wan2gp = wan2gp
        self.files = files
    }
}
