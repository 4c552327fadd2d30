import Foundation
import Testing
@testable import Catalog

/// The 217 real definitions, as published at the Wan2GP commit the support table matches.
let wan2gpFixture = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("fixtures/wan2gp").path

let catalog: Catalog = try! Catalog.load(wan2gpDirectory: wan2gpFixture)

let always24 = [
    "pose/dw-ll_ucoco_384.onnx", "pose/yolox_l.onnx", "scribble/netG_A_latest.pth", "flow/raft-things.pth",
    "depth/depth_anything_v2_vitl.pth", "wav2vec/config.json", "wav2vec/feature_extractor_config.json",
    "wav2vec/model.safetensors", "wav2vec/preprocessor_config.json", "wav2vec/special_tokens_map.json",
    "wav2vec/tokenizer_config.json", "wav2vec/vocab.json", "chinese-wav2vec2-base/config.json",
    "chinese-wav2vec2-base/pytorch_model.bin", "chinese-wav2vec2-base/preprocessor_config.json",
    "roformer/model_bs_roformer_ep_317_sdr_12.9755.ckpt", "roformer/model_bs_roformer_ep_317_sdr_12.9755.yaml",
    "roformer/download_checks.json", "pyannote/pyannote_model_wespeaker-voxceleb-resnet34-LM.bin",
    "pyannote/pytorch_model_segmentation-3.0.bin", "det_align/detface.pt",
    "mask/sam_vit_h_4b8939_fp16.safetensors", "mask/matanyone.safetensors", "mask/config.json",
]

let wanSupport = [
    "umt5-xxl/special_tokens_map.json", "umt5-xxl/spiece.model", "umt5-xxl/tokenizer.json", "umt5-xxl/tokenizer_config.json",
    "xlm-roberta-large/models_clip_open-clip-xlm-roberta-large-vit-huge-14-bf16.safetensors",
    "xlm-roberta-large/sentencepiece.bpe.model", "xlm-roberta-large/special_tokens_map.json",
    "xlm-roberta-large/tokenizer.json", "xlm-roberta-large/tokenizer_config.json",
    "Wan2.1_VAE.safetensors", "Wan2.1_VAE_upscale2x_imageonly_real_v1.safetensors",
]

struct Example: CustomTestStringConvertible, Sendable {
    var name: String
    var id: String
    var settings: ModelSettings
    var ckpts: [String]
    var loras: [String] = []
    var testDescription: String { name }
}

func s(_ q: ModelSettings.Quantization, _ te: ModelSettings.TextEncoderQuantization, _ d: ModelSettings.DType = .bf16) -> ModelSettings {
    ModelSettings(transformerQuantization: q, textEncoderQuantization: te, dtype: d)
}

/// The acceptance examples of wan2gp.md §5, file by file.
let examples: [Example] = [
    Example(name: "E1 t2v", id: "t2v", settings: s(.int8, .int8), ckpts: [
        "wan2.1_text2video_14B_quanto_mbf16_int8.safetensors",
        "umt5-xxl/models_t5_umt5-xxl-enc-quanto_int8.safetensors"] + wanSupport),
    Example(name: "E2 i2v_2_2 bf16 text encoder", id: "i2v_2_2", settings: s(.int8, .bf16), ckpts: [
        "wan2.2_image2video_14B_high_quanto_mbf16_int8.safetensors",
        "wan2.2_image2video_14B_low_quanto_mbf16_int8.safetensors",
        "umt5-xxl/models_t5_umt5-xxl-enc-bf16.safetensors"] + wanSupport),
    Example(name: "E3 vace_14B fp16", id: "vace_14B", settings: s(.int8, .int8, .fp16), ckpts: [
        "wan2.1_text2video_14B_quanto_mfp16_int8.safetensors",
        "wan2.1_Vace_14B_module_quanto_mfp16_int8.safetensors",
        "umt5-xxl/models_t5_umt5-xxl-enc-quanto_int8.safetensors"] + wanSupport),
    Example(name: "E4 ti2v_2_2 16-bit", id: "ti2v_2_2", settings: s(.bf16, .int8), ckpts: [
        "wan2.2_text2video_5B_mbf16.safetensors",
        "umt5-xxl/models_t5_umt5-xxl-enc-quanto_int8.safetensors",
        "umt5-xxl/special_tokens_map.json", "umt5-xxl/spiece.model", "umt5-xxl/tokenizer.json",
        "umt5-xxl/tokenizer_config.json", "Wan2.2_VAE.safetensors"]),
    Example(name: "E5 flux", id: "flux", settings: s(.int8, .int8), ckpts: [
        "flux1-dev_quanto_bf16_int8.safetensors",
        "T5_xxl_1.1/T5_xxl_1.1_enc_quanto_bf16_int8.safetensors", "T5_xxl_1.1/added_tokens.json",
        "T5_xxl_1.1/special_tokens_map.json", "T5_xxl_1.1/spiece.model", "T5_xxl_1.1/tokenizer_config.json",
        "clip_vit_large_patch14/text_config.json", "clip_vit_large_patch14/merges.txt",
        "clip_vit_large_patch14/model.safetensors", "clip_vit_large_patch14/preprocessor_config.json",
        "clip_vit_large_patch14/special_tokens_map.json", "clip_vit_large_patch14/tokenizer.json",
        "clip_vit_large_patch14/tokenizer_config.json", "clip_vit_large_patch14/vocab.json", "flux_vae.safetensors"]),
    Example(name: "E6 ltx2_22B_distilled preload by reference", id: "ltx2_22B_distilled", settings: s(.int8, .int8), ckpts: [
        "ltx-2.3-22b-distilled_diffusion_model_quanto_int8.safetensors",
        "ltx-2.3-22b-ic-lora-hdr-scene-emb.safetensors",
        "gemma-3-12b-it-qat-q4_0-unquantized/gemma-3-12b-it-qat-q4_0-unquantized_quanto_bf16_int8.safetensors",
        "ltx-2.3-spatial-upscaler-x2-1.1.safetensors", "ltx-2.3-temporal-upscaler-x2-1.0.safetensors",
        "ltx-2.3-22b_vae.safetensors", "ltx-2.3-22b_audio_vae.safetensors", "ltx-2.3-22b_vocoder.safetensors",
        "ltx-2.3-22b_text_embedding_projection.safetensors", "ltx-2.3-22b_embeddings_connector.safetensors"]
        + ["added_tokens.json", "chat_template.json", "config_light.json", "generation_config.json",
           "preprocessor_config.json", "processor_config.json", "special_tokens_map.json", "tokenizer.json",
           "tokenizer.model", "tokenizer_config.json"].map { "gemma-3-12b-it-qat-q4_0-unquantized/" + $0 }),
    Example(name: "E7 hunyuan 1.5 quantized first", id: "hunyuan_1_5_480_i2v_step_distilled", settings: s(.bf16, .bf16), ckpts: [
        "hunyuan_video_1.5_i2v_480_step_distilled_quanto_bf16_int8.safetensors",
        "Qwen2.5-VL-7B-Instruct/Qwen2.5-VL-7B-Instruct_bf16.safetensors", "qwen_vae.safetensors", "qwen_vae_config.json",
        "Qwen2.5-VL-7B-Instruct/merges.txt", "Qwen2.5-VL-7B-Instruct/tokenizer_config.json",
        "Qwen2.5-VL-7B-Instruct/config.json", "Qwen2.5-VL-7B-Instruct/vocab.json",
        "Qwen2.5-VL-7B-Instruct/video_preprocessor_config.json", "Qwen2.5-VL-7B-Instruct/preprocessor_config.json",
        "Qwen2.5-VL-7B-Instruct/chat_template.json", "Glyph-SDXL-v2/color_idx.json",
        "Glyph-SDXL-v2/multilingual_10-lang_idx.json", "Glyph-SDXL-v2/byt5-small/config.json",
        "Glyph-SDXL-v2/byt5-small/model.safetensors", "Glyph-SDXL-v2/byt5-small/byt5_model.safetensors",
        "siglip_vision_model/model.safetensors", "siglip_vision_model/config.json",
        "siglip_vision_model/preprocessor_config.json", "hunyuan_video_1_5_VAE_fp32.safetensors",
        "hunyuan_video_1_5_VAE.json"]),
    Example(name: "E8 chatterbox alt folder", id: "chatterbox", settings: s(.fp8, .bf16, .fp16), ckpts: [
        "chatterbox/t3_mtl23ls_v2.safetensors", "chatterbox/ve.safetensors", "chatterbox/s3gen.pt",
        "chatterbox/grapheme_mtl_merged_expanded_v1.json", "chatterbox/conds.pt", "chatterbox/Cangjie5_TC.json"]),
    Example(name: "E9 vace_ditto_14B", id: "vace_ditto_14B", settings: s(.int8, .int8), ckpts: [
        "wan2.1_text2video_14B_quanto_mbf16_int8.safetensors",
        "wan2.1_Vace_14B_module_quanto_mbf16_int8.safetensors",
        "ditto_global.safetensors", "ditto_global_style.safetensors", "ditto_sim2real.safetensors",
        "umt5-xxl/models_t5_umt5-xxl-enc-quanto_int8.safetensors"] + wanSupport),
    Example(name: "E10 vace_14B_cocktail loras", id: "vace_14B_cocktail", settings: s(.int8, .int8), ckpts: [
        "wan2.1_text2video_14B_quanto_mbf16_int8.safetensors",
        "wan2.1_Vace_14B_module_quanto_mbf16_int8.safetensors",
        "umt5-xxl/models_t5_umt5-xxl-enc-quanto_int8.safetensors"] + wanSupport,
        loras: ["loras/wan/Wan21_CausVid_14B_T2V_lora_rank32_v2.safetensors", "loras/wan/DetailEnhancerV1.safetensors",
                "loras/wan/Wan21_AccVid_T2V_14B_lora_rank32_fp16.safetensors",
                "loras/wan/Wan21_T2V_14B_MoviiGen_lora_rank32_fp16.safetensors"]),
]

@Test(arguments: examples)
func acceptanceExample(_ example: Example) throws {
    let files = try catalog.expand(example.id, settings: example.settings)
    let expected = Set((example.ckpts + always24).map { "ckpts/" + $0 } + example.loras)
    let actual = Set(files.map(\.path))
    #expect(actual.subtracting(expected).sorted() == [], "unexpected files")
    #expect(expected.subtracting(actual).sorted() == [], "missing files")
    #expect(files.count == expected.count, "duplicates by path")
}

@Test func allDefinitionsLoad() {
    #expect(catalog.models.count == 217)
    #expect(catalog.warnings.isEmpty, "\(catalog.warnings)")
    #expect(catalog.support.wan2gp_commit.hasPrefix("8681e9f7"))
}

@Test(arguments: [
    ModelSettings(transformerQuantization: .int8, textEncoderQuantization: .int8, dtype: .bf16),
    ModelSettings(transformerQuantization: .bf16, textEncoderQuantization: .bf16, dtype: .bf16),
    ModelSettings(transformerQuantization: .fp8, textEncoderQuantization: .int8, dtype: .fp16),
    ModelSettings(transformerQuantization: .int8, textEncoderQuantization: .bf16, dtype: .fp16, allVariants: true),
])
func everyDefinitionExpands(_ settings: ModelSettings) throws {
    for id in catalog.ids {
        let files = try catalog.expand(id, settings: settings)
        #expect(files.count >= 25, "\(id) expands to only \(files.count) files")
        #expect(Set(files.map(\.path)).count == files.count)
        for f in files {
            #expect(f.url.hasPrefix("https://huggingface.co/") && f.url.contains("/resolve/main/"), "\(id): \(f.url)")
            #expect(f.path.hasPrefix("ckpts/") || f.path.hasPrefix("loras/"), "\(id): \(f.path)")
            #expect(!f.path.contains(".."))
        }
    }
}

/// wan2gp.md §5 "whole-catalogue sanity figure".
@Test(arguments: [ModelSettings.Quantization.int8, .bf16])
func wholeCatalogUnion(_ q: ModelSettings.Quantization) throws {
    let settings = ModelSettings(transformerQuantization: q,
                                 textEncoderQuantization: q == .int8 ? .int8 : .bf16, dtype: .bf16)
    var ckpts = Set<String>()
    var loras = Set<String>()
    for id in catalog.ids {
        for f in try catalog.expand(id, settings: settings) {
            if f.path.hasPrefix("loras/") { loras.insert(f.path) } else { ckpts.insert(f.path) }
        }
    }
    #expect(ckpts.count == 628)
    #expect(loras.count == 20)
}

@Test func variantRuleWorkedExamples() throws {
    func main(_ id: String, _ q: ModelSettings.Quantization, _ d: ModelSettings.DType = .bf16) throws -> [String] {
        try catalog.expand(id, settings: ModelSettings(transformerQuantization: q, dtype: d))
            .filter { $0.role == .transformer || $0.role == .module }.map(\.path)
    }
    #expect(try main("t2v", .int8, .fp16) == ["ckpts/wan2.1_text2video_14B_quanto_mfp16_int8.safetensors"])
    #expect(try main("t2v", .bf16, .fp16) == ["ckpts/wan2.1_text2video_14B_mbf16.safetensors"])
    #expect(try main("ltx2_19B", .int8) == ["ckpts/ltx-2-19b-dev-fp8_diffusion_model.safetensors"])
    #expect(try main("ltx2_19B", .bf16) == ["ckpts/ltx-2-19b-dev_diffusion_model.safetensors"])
    #expect(try main("vace_multitalk_14B", .int8) == [
        "ckpts/Wan14BT2VFusioniX_quanto_bf16_int8.safetensors",
        "ckpts/wan2.1_Vace_14B_module_quanto_mbf16_int8.safetensors",
        "ckpts/wan2.1_multitalk_14B_quanto_mbf16_int8.safetensors"])
    #expect(try main("vace_multitalk_14B", .bf16).first == "ckpts/Wan14BT2VFusioniX_fp16.safetensors")
    #expect(try main("i2v_2_2_Enhanced_Lightning_v2_svi2pro", .bf16) == [
        "ckpts/wan22EnhancedLightning_v2I2VFP8HIGH.safetensors", "ckpts/wan22EnhancedLightning_v2I2VFP8LOW.safetensors"])
}

@Test func perModelAdjustments() throws {
    func paths(_ id: String) throws -> Set<String> { Set(try catalog.expand(id, settings: ModelSettings()).map(\.path)) }
    let ltx25 = try paths("ltx2_25_22B")
    #expect(ltx25.contains("ckpts/ltx-2.5-22b_video_embeddings_connector_bf16.safetensors"))
    #expect(ltx25.contains("ckpts/ltx-2.5-22b_audio_embeddings_connector_int8_convrot.safetensors"))
    let nvfp4 = try paths("ltx2_25_22B_distilled_nvfp4")
    #expect(nvfp4.contains("ckpts/ltx-2.5-22b_video_embeddings_connector_nvfp4_bf16.safetensors"))
    #expect(!nvfp4.contains("ckpts/ltx-2.5-22b_video_embeddings_connector_bf16.safetensors"))
    #expect(try paths("ltx2_distilled").contains("ckpts/ltx-2-19b-distilled_embeddings_connector.safetensors"))
    #expect(try paths("ltx2_19B").contains("ckpts/ltx-2-19b-dev_embeddings_connector.safetensors"))
    #expect(!(try paths("joyai_echo")).contains("ckpts/ltx-2.3-temporal-upscaler-x2-1.0.safetensors"))
    #expect(try paths("heartmula_rl_oss_3b_20260123").contains("ckpts/HeartMula/HeartMula_codec_20260123.safetensors"))
    #expect(try paths("heartmula_oss_3b").contains("ckpts/HeartMula/codec_config.json"))
    #expect(try paths("ideogram4_nf4").contains("ckpts/Qwen3-VL-8B-Instruct/Qwen3-VL-8B-Instruct_nf4.safetensors"))
    #expect(try paths("ideogram4").contains("ckpts/Qwen3-VL-8B-Instruct/Qwen3-VL-8B-Instruct_fp8.safetensors"))
    #expect(try paths("krea2_raw_edit").contains("ckpts/Qwen3-VL-4B-Instruct/Qwen3-VL-4B-Instruct_vision_bf16.safetensors"))
    #expect(!(try paths("krea2_raw")).contains("ckpts/Qwen3-VL-4B-Instruct/Qwen3-VL-4B-Instruct_vision_bf16.safetensors"))
    let lm = try paths("ace_step_v1_5_turbo_lm_1_7b")
    #expect(lm.contains("ckpts/acestep-5Hz-lm-1.7B/acestep-5Hz-lm-1.7B_quanto_bf16_int8.safetensors"))
    #expect(lm.contains("ckpts/acestep-5Hz-lm-1.7B/chat_template.jinja"))
    #expect(!(try paths("ace_step_v1_5")).contains { $0.hasPrefix("ckpts/acestep-5Hz-lm") })
    let kiwi = try paths("kiwi_edit")
    #expect(kiwi.contains("ckpts/wan2.2_kiwi_edit_5B_instruct_reference_ref_embedder.safetensors"))
    #expect(kiwi.contains("ckpts/kiwi_mllm_encoder_instruct_reference/qwen_config.json"))
    // ovi_1_1_fastwan names its transformers through `source:`: needed, but not Wan2GP's download.
    let ovi = try catalog.expand("ovi_1_1_fastwan", settings: ModelSettings())
    #expect(ovi.filter { $0.role == .transformer }.allSatisfy { !$0.downloadable })
    #expect(ovi.contains { $0.path == "loras/wan_5B/Wan2_2_5B_FastWanFullAttn_lora_rank_128_bf16.safetensors" })
    #expect(try paths("ltx2_19B_nvfp4").allSatisfy { !$0.contains("hdr-scene") })
}

@Test func sharedFilesOffKeepsOnlyDeclaredFiles() throws {
    let files = try catalog.expand("t2v", settings: ModelSettings(sharedFiles: false))
    #expect(files.map(\.path).sorted() == [
        "ckpts/umt5-xxl/models_t5_umt5-xxl-enc-quanto_int8.safetensors",
        "ckpts/wan2.1_text2video_14B_quanto_mbf16_int8.safetensors"])
}

@Test func allVariantsTakesEverySlotEntry() throws {
    let files = try catalog.expand("vace_14B", settings: ModelSettings(sharedFiles: false, allVariants: true))
    #expect(files.filter { $0.role == .transformer }.count == 3)
    #expect(files.filter { $0.role == .module }.count == 3)
    #expect(files.filter { $0.role == .textEncoder }.count == 2)
}

/// A Wan2GP directory with a few real defaults and finetunes over them.
func wan2gpWithFinetunes(_ finetunes: [String: String]) throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("wan2gp-\(UUID().uuidString)").path
    for sub in ["defaults", "finetunes"] { try FileManager.default.createDirectory(atPath: dir + "/" + sub, withIntermediateDirectories: true) }
    for id in ["t2v", "vace_14B", "i2v_2_2"] {
        try FileManager.default.copyItem(atPath: wan2gpFixture + "/defaults/\(id).json", toPath: dir + "/defaults/\(id).json")
    }
    for (name, text) in finetunes { try text.write(toFile: dir + "/finetunes/" + name, atomically: true, encoding: .utf8) }
    return dir
}

@Test func finetunesMergeOverDefaultsAndNewIdsAreModels() throws {
    let dir = try wan2gpWithFinetunes([
        "t2v.json": #"{"model": {"visible": false}}"#,
        "vace_14B.json": #"{"model": {"URLs": ["https://huggingface.co/me/ft/resolve/main/my_vace_quanto_mbf16_int8.safetensors"]}}"#,
        "my_t2v.json": #"{"model": {"name": "Mine", "architecture": "t2v", "URLs": "t2v", "loras": ["https://huggingface.co/me/ft/resolve/main/l/style.safetensors"]}}"#,
        "broken.json": "{ not json",
    ])
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let c = try Catalog.load(wan2gpDirectory: dir)
    #expect(c.ids == ["i2v_2_2", "my_t2v", "t2v", "vace_14B"])
    #expect(c.models["t2v"]?.visible == false, "a finetune with the same id merges key by key")
    #expect(c.models["t2v"]?.model["URLs"]?.array?.count == 3, "keys it does not contain are inherited")
    let vace = try c.expand("vace_14B", settings: ModelSettings(sharedFiles: false))
    #expect(vace.contains { $0.path == "ckpts/my_vace_quanto_mbf16_int8.safetensors" })
    #expect(vace.contains { $0.path == "ckpts/wan2.1_Vace_14B_module_quanto_mbf16_int8.safetensors" }, "modules kept from defaults")
    let mine = try c.expand("my_t2v", settings: ModelSettings())
    #expect(mine.contains { $0.path == "ckpts/wan2.1_text2video_14B_quanto_mbf16_int8.safetensors" })
    #expect(mine.contains { $0.path == "loras/wan/style.safetensors" })
    #expect(mine.contains { $0.path == "ckpts/umt5-xxl/models_t5_umt5-xxl-enc-quanto_int8.safetensors" }, "handler defaults apply to a new id")
    #expect(c.warnings.contains { $0.contains("broken.json") && $0.contains("ignored") })
}

@Test func referenceCyclesAndBadReferencesAreClearErrors() throws {
    let dir = try wan2gpWithFinetunes([
        "a.json": #"{"model": {"architecture": "t2v", "URLs": "t2v", "preload_URLs": "b"}}"#,
        "b.json": #"{"model": {"architecture": "t2v", "URLs": "t2v", "preload_URLs": "a"}}"#,
        "c.json": #"{"model": {"architecture": "t2v", "URLs": "t2v", "loras": "nobody"}}"#,
        "d.json": #"{"model": {"architecture": "t2v", "URLs": "nobody", "modules": ["i2v_2_2"]}}"#,
        "e.json": #"{"model": {"architecture": "t2v", "URLs": ["https://huggingface.co/a/b/resolve/main/x.safetensors|../up"]}}"#,
    ])
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let c = try Catalog.load(wan2gpDirectory: dir)
    do {
        _ = try c.expand("a", settings: ModelSettings())
        Issue.record("a cycle expanded")
    } catch let error as CatalogError {
        guard case .circularReference(let model, let key, _) = error else { Issue.record("\(error)"); return }
        #expect(model == "a" && key == "preload_URLs")
        #expect(error.description.contains("circular reference"))
    }
    #expect(throws: CatalogError.unknownReference(model: "c", key: "loras", reference: "nobody")) {
        try c.expand("c", settings: ModelSettings())
    }
    #expect(throws: CatalogError.badModule(model: "d", message: "module 'i2v_2_2' must have a 'modules' list with exactly one entry")) {
        try c.expand("d", settings: ModelSettings())
    }
    #expect(throws: CatalogError.unconfinedPath(model: "e", files: [dir + "/finetunes/e.json"], key: "URLs",
                                                problem: "path 'ckpts/../up/x.safetensors' climbs out of its folder ('..' is not allowed)")) {
        try c.expand("e", settings: ModelSettings())
    }
}

/// A definition is input wgpm does not trust: each way it shapes a path is checked by the one
/// confinement rule, and the error names the model, its file, the key and what to do.
struct BadDefinition: CustomTestStringConvertible, Sendable {
    var name: String
    var json: String
    var key: String
    var problem: String
    var testDescription: String { name }
}

let badDefinitions: [BadDefinition] = [
    BadDefinition(name: "text_encoder_folder climbs out", json: #"{"model": {"architecture": "t2v", "URLs": "t2v", "text_encoder_folder": "../.."}}"#,
                  key: "text_encoder_folder", problem: "climbs out of its folder"),
    BadDefinition(name: "text_encoder_folder with a NUL", json: #"{"model": {"architecture": "t2v", "URLs": "t2v", "text_encoder_folder": "umt5\u0000x"}}"#,
                  key: "text_encoder_folder", problem: "contains a control character"),
    BadDefinition(name: "text_encoder_folder absolute", json: #"{"model": {"architecture": "t2v", "URLs": "t2v", "text_encoder_folder": "/tmp"}}"#,
                  key: "text_encoder_folder", problem: "has an empty segment"),
    BadDefinition(name: "text encoder URL naming '..'", json: #"{"model": {"architecture": "t2v", "URLs": "t2v", "text_encoder_URLs": ["https://huggingface.co/a/b/resolve/main/x/.."]}}"#,
                  key: "text_encoder_URLs", problem: "climbs out of its folder"),
    // Only the {te_folder} support group makes a path here: the text encoder URL is not a download.
    BadDefinition(name: "{te_folder} in a support group", json: #"{"model": {"architecture": "ace_step_v1_5", "URLs": "ace_step_v1_5", "text_encoder_URLs": ["lm.safetensors"], "text_encoder_folder": "../../x"}}"#,
                  key: "text_encoder_folder", problem: "'ckpts/../../x/config.json' climbs out"),
    BadDefinition(name: "files_from_key value climbs out", json: #"{"model": {"architecture": "ltx2_19B", "URLs": "ltx2_19B", "ltx2_video_vae_file": "../../../tmp/x.safetensors"}}"#,
                  key: "ltx2_video_vae_file", problem: "'ckpts/../../../tmp/x.safetensors' climbs out"),
    BadDefinition(name: "alt folder of a module", json: #"{"model": {"architecture": "vace_14B", "URLs": "t2v", "modules": [["https://huggingface.co/a/b/resolve/main/m.safetensors|/etc"]]}}"#,
                  key: "modules", problem: "empty segment"),
    BadDefinition(name: "alt folder of a lora", json: #"{"model": {"architecture": "t2v", "URLs": "t2v", "loras": ["https://huggingface.co/a/b/resolve/main/l.safetensors|../../x"]}}"#,
                  key: "loras", problem: "'loras/wan/../../x/l.safetensors' climbs out"),
    BadDefinition(name: "preload into wgpm's partial folder", json: #"{"model": {"architecture": "t2v", "URLs": "t2v", "preload_URLs": ["https://huggingface.co/a/b/resolve/main/p.bin|.wgpm-partial"]}}"#,
                  key: "preload_URLs", problem: "names wgpm's own working files"),
    BadDefinition(name: "VAE alt folder '.'", json: #"{"model": {"architecture": "t2v", "URLs": "t2v", "VAE_URLs": "https://huggingface.co/a/b/resolve/main/v.safetensors|."}}"#,
                  key: "VAE_URLs", problem: "'.' segments"),
]

@Test(arguments: badDefinitions)
func definitionPathsAreConfined(_ bad: BadDefinition) throws {
    let dir = try wan2gpWithFinetunes(["x.json": bad.json])
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let c = try Catalog.load(wan2gpDirectory: dir)
    for settings in [ModelSettings(), ModelSettings(allVariants: true)] {
        do {
            let files = try c.expand("x", settings: settings)
            Issue.record("expanded to \(files.map(\.path))")
        } catch let error as CatalogError {
            guard case .unconfinedPath(let model, let files, let key, let problem) = error else { Issue.record("\(error)"); continue }
            #expect(model == "x" && files == [dir + "/finetunes/x.json"] && key == bad.key, "\(error)")
            #expect(problem.contains(bad.problem), "\(problem)")
            #expect(error.description.hasPrefix(dir + "/finetunes/x.json: '\(bad.key)' of model 'x' gives a path wgpm will not write"))
            #expect(error.description.hasSuffix("Fix or remove the definition file; nothing was planned."))
            #expect(!error.description.contains("\u{0}"), "no control character reaches the terminal")
        }
    }
}

@Test func anEmptyTextEncoderFolderIsNoFolder() throws {
    let dir = try wan2gpWithFinetunes(["x.json": #"{"model": {"architecture": "t2v", "URLs": "t2v", "text_encoder_folder": ""}}"#])
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let files = try Catalog.load(wan2gpDirectory: dir).expand("x", settings: ModelSettings())
    #expect(files.contains { $0.path == "ckpts/models_t5_umt5-xxl-enc-quanto_int8.safetensors" && $0.role == .textEncoder })
}

/// A finetune over a default is blamed on both files, in merge order.
@Test func aBadFinetuneOverADefaultNamesBothFiles() throws {
    let dir = try wan2gpWithFinetunes(["t2v.json": #"{"model": {"text_encoder_folder": "../../.."}}"#])
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let c = try Catalog.load(wan2gpDirectory: dir)
    #expect(throws: CatalogError.unconfinedPath(model: "t2v", files: [dir + "/defaults/t2v.json", dir + "/finetunes/t2v.json"],
                                                key: "text_encoder_folder",
                                                problem: "path 'ckpts/../../../models_t5_umt5-xxl-enc-quanto_int8.safetensors' climbs out of its folder ('..' is not allowed)")) {
        try c.expand([("i2v_2_2", ModelSettings()), ("t2v", ModelSettings())])
    }
}
