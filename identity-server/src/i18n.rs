//! The pages' languages: English and Traditional Chinese.
//!
//! The language is the citizen's own choice (the switch on every page, kept in a cookie),
//! else the e-service's `ui_locales`, else the browser's `Accept-Language`, else English.
//! Every text lives in one [`Texts`] per language, so a missing translation is a compile
//! error rather than a page in two languages.

/// A page language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    /// English.
    En,
    /// Traditional Chinese (Hong Kong usage).
    ZhHant,
}

impl Lang {
    /// The BCP 47 tag for `lang` attributes, cookies and `ui_locales`.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::ZhHant => "zh-Hant",
        }
    }

    /// A language tag we can show, if this is one. Simplified Chinese is not offered, so
    /// `zh-Hans` and `zh-CN` fall through to the next preference.
    pub fn from_tag(tag: &str) -> Option<Lang> {
        let t = tag.trim().to_ascii_lowercase();
        let mut parts = t.split(['-', '_']);
        match parts.next() {
            Some("en") => Some(Lang::En),
            Some("zh") => {
                let rest: Vec<&str> = parts.collect();
                if rest.iter().any(|p| matches!(*p, "hans" | "cn" | "sg")) {
                    None
                } else {
                    Some(Lang::ZhHant)
                }
            }
            _ => None,
        }
    }

    /// Picks the language: the citizen's switch, then `ui_locales`, then `Accept-Language`.
    pub fn pick(chosen: Option<&str>, ui_locales: Option<&str>, accept: Option<&str>) -> Lang {
        if let Some(l) = chosen.and_then(Lang::from_tag) {
            return l;
        }
        if let Some(l) = ui_locales.and_then(|u| u.split(' ').find_map(Lang::from_tag)) {
            return l;
        }
        accept.and_then(from_accept_language).unwrap_or(Lang::En)
    }

    /// The other language, for the switch.
    pub fn other(self) -> Lang {
        match self {
            Lang::En => Lang::ZhHant,
            Lang::ZhHant => Lang::En,
        }
    }

    /// The texts of this language.
    pub fn texts(self) -> &'static Texts {
        match self {
            Lang::En => &EN,
            Lang::ZhHant => &ZH_HANT,
        }
    }
}

/// The best language of an `Accept-Language` header, by its q-values.
fn from_accept_language(header: &str) -> Option<Lang> {
    let mut best: Option<(f32, Lang)> = None;
    for item in header.split(',').take(20) {
        let mut parts = item.split(';');
        let tag = parts.next().unwrap_or("");
        let q = parts
            .find_map(|p| p.trim().strip_prefix("q="))
            .and_then(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        if let Some(l) = Lang::from_tag(tag) {
            if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, l));
            }
        }
    }
    best.map(|(_, l)| l)
}

/// Every text on the pages. `{client}`, `{dept}` and `{name}` are filled in (escaped).
#[allow(missing_docs)]
pub struct Texts {
    pub name_of_language: &'static str,
    pub brand: &'static str,
    pub skip: &'static str,
    pub language: &'static str,
    pub error_title: &'static str,
    pub error_next: &'static str,
    /// What an error page says, by the error's kind, in this language; the details stay
    /// in English (they name fields and values), marked `lang="en"`.
    pub error_request: &'static str,
    pub error_denied: &'static str,
    pub error_not_found: &'static str,
    pub error_too_many: &'static str,
    pub error_unavailable: &'static str,
    pub error_internal: &'static str,
    pub login_title: &'static str,
    pub asks_login: &'static str,
    pub passkey_heading: &'static str,
    pub passkey_intro: &'static str,
    pub passkey_button: &'static str,
    pub passkey_unavailable: &'static str,
    pub passkey_failed: &'static str,
    pub passkey_required: &'static str,
    pub passkey_required_none: &'static str,
    pub password_heading: &'static str,
    pub username: &'static str,
    pub password: &'static str,
    pub login_button: &'static str,
    pub consent_title: &'static str,
    pub consent_asks: &'static str,
    pub consent_note: &'static str,
    pub allow: &'static str,
    pub deny: &'static str,
    pub scope_openid: &'static str,
    pub scope_profile: &'static str,
    pub scope_email: &'static str,
    pub scope_phone: &'static str,
    pub scope_address: &'static str,
    pub scope_offline: &'static str,
    pub scope_other: &'static str,
    pub account_title: &'static str,
    pub level_passkey: &'static str,
    pub level_password: &'static str,
    pub level_code: &'static str,
    pub passkeys_heading: &'static str,
    pub passkeys_caption: &'static str,
    pub col_name: &'static str,
    pub col_added: &'static str,
    pub col_last_used: &'static str,
    pub col_kind: &'static str,
    pub col_actions: &'static str,
    pub synced: &'static str,
    pub device_bound: &'static str,
    pub never: &'static str,
    pub rename: &'static str,
    pub new_name_for: &'static str,
    pub remove: &'static str,
    pub no_passkeys: &'static str,
    pub add_passkey_heading: &'static str,
    pub add_passkey_intro: &'static str,
    pub passkey_name: &'static str,
    pub passkey_name_default: &'static str,
    pub add_passkey_button: &'static str,
    pub consents_heading: &'static str,
    pub consents_caption: &'static str,
    pub col_eservice: &'static str,
    pub col_department: &'static str,
    pub col_shared: &'static str,
    pub withdraw: &'static str,
    pub no_consents: &'static str,
    pub session_heading: &'static str,
    pub logout: &'static str,
    pub logged_out_title: &'static str,
    pub logged_out: &'static str,
    pub not_logged_in: &'static str,
    pub scope_identity_document: &'static str,
    pub password_section: &'static str,
    pub new_password: &'static str,
    pub new_password_hint: &'static str,
    pub set_password: &'static str,
    pub events_heading: &'static str,
    pub events_caption: &'static str,
    pub col_when: &'static str,
    pub col_event: &'static str,
    pub col_result: &'static str,
    pub succeeded: &'static str,
    pub failed: &'static str,
    pub activate_title: &'static str,
    pub activate_intro: &'static str,
    pub activation_code: &'static str,
    pub date_of_birth: &'static str,
    pub date_of_birth_hint: &'static str,
    pub activate_button: &'static str,
    pub scope_signing: &'static str,
    pub sign_title: &'static str,
    pub sign_asks: &'static str,
    pub sign_document: &'static str,
    pub sign_description: &'static str,
    pub sign_hash: &'static str,
    pub sign_code: &'static str,
    pub sign_code_hint: &'static str,
    pub sign_approve: &'static str,
    pub sign_password_note: &'static str,
    pub sign_reject: &'static str,
    pub signed_notice: &'static str,
    pub rejected_notice: &'static str,
    pub end_title: &'static str,
    pub end_asks: &'static str,
    pub end_asks_unknown: &'static str,
    pub end_cancel: &'static str,
}

static EN: Texts = Texts {
    name_of_language: "English",
    brand: "Identity Service",
    skip: "Skip to main content",
    language: "Language",
    error_title: "Something went wrong",
    error_next: "Go back and try again, or return to the e-service and start again.",
    error_request: "The request could not be handled.",
    error_denied: "This is not allowed, or your sign-in has ended.",
    error_not_found: "There is nothing here.",
    error_too_many: "Too many attempts. Please wait and try again.",
    error_unavailable: "The service is busy or unavailable. Please try again shortly.",
    error_internal: "An internal error occurred.",
    login_title: "Log in",
    asks_login: "{client} ({dept}) asks you to log in.",
    passkey_heading: "With a passkey",
    passkey_intro: "Use the passkey on your phone, computer or security key. It is the safer way to log in, and nobody can steal it from a fake site.",
    passkey_button: "Log in with a passkey",
    passkey_unavailable: "This browser cannot use passkeys here (or JavaScript is off). Log in with your password, or use a browser that supports passkeys.",
    passkey_failed: "The passkey did not work or was cancelled. Try again, or log in another way.",
    passkey_required: "This e-service needs the higher level of assurance: log in with a passkey. A password alone is not enough.",
    passkey_required_none: "If you have no passkey yet, log in to your account page with your password and add one, then come back.",
    password_heading: "With a password",
    username: "Username",
    password: "Password",
    login_button: "Log in",
    consent_title: "Share your information?",
    consent_asks: "{client} ({dept}) asks for:",
    consent_note: "You can withdraw this consent at any time on your account page.",
    allow: "Allow",
    deny: "Deny",
    scope_openid: "Your identifier for this department",
    scope_profile: "Your name in English and Chinese",
    scope_email: "Your e-mail address",
    scope_phone: "Your phone number",
    scope_address: "Your address",
    scope_offline: "Access while you are away (until you withdraw consent)",
    scope_other: "Other information",
    account_title: "Your account",
    level_passkey: "You logged in with a passkey (higher assurance).",
    level_password: "You logged in with a password (lower assurance).",
    level_code: "You activated your account with a one-time code. Add a passkey now: it is how you will log in.",
    passkeys_heading: "Passkeys",
    passkeys_caption: "Your passkeys",
    col_name: "Name",
    col_added: "Added",
    col_last_used: "Last used",
    col_kind: "Kind",
    col_actions: "Actions",
    synced: "Synced to your other devices",
    device_bound: "On one device only",
    never: "Never",
    rename: "Rename",
    new_name_for: "New name for {name}",
    remove: "Remove",
    no_passkeys: "You have no passkeys yet.",
    add_passkey_heading: "Add a passkey",
    add_passkey_intro: "Your device will ask for your fingerprint, face or PIN. The identity service never sees them.",
    passkey_name: "Name for the new passkey",
    passkey_name_default: "My passkey",
    add_passkey_button: "Add a passkey",
    consents_heading: "Consents",
    consents_caption: "E-services you share information with",
    col_eservice: "E-service",
    col_department: "Department",
    col_shared: "Shared",
    withdraw: "Withdraw",
    no_consents: "You have not shared information with any e-service.",
    session_heading: "Session",
    logout: "Log out",
    logged_out_title: "Logged out",
    logged_out: "You have logged out.",
    not_logged_in: "You are not logged in.",
    scope_identity_document: "Your identity document number",
    password_section: "Password",
    new_password: "New password",
    new_password_hint: "At least 12 characters; a few unrelated words are easy to remember and hard to guess.",
    set_password: "Set password",
    events_heading: "Recent security events",
    events_caption: "What happened to your account lately",
    col_when: "When",
    col_event: "Event",
    col_result: "Result",
    succeeded: "Succeeded",
    failed: "Failed",
    activate_title: "Activate your account",
    activate_intro: "Enter the one-time code from the registration office and your date of birth. Then add a passkey on the next page.",
    activation_code: "One-time code",
    date_of_birth: "Date of birth",
    date_of_birth_hint: "As on your identity document, for example 1990-05-17.",
    activate_button: "Activate",
    scope_signing: "Ask you to sign documents (each one needs your passkey)",
    sign_title: "Sign a document",
    sign_asks: "{client} ({dept}) asks you to sign a document.",
    sign_document: "Document",
    sign_description: "Description",
    sign_hash: "Fingerprint of the document",
    sign_code: "Identification code:",
    sign_code_hint: "Check that the e-service shows the same code beside this document. If it does not, reject.",
    sign_approve: "Approve and sign with a passkey",
    sign_password_note: "Only your passkey can sign; a password cannot.",
    sign_reject: "Reject",
    signed_notice: "You signed the document. You can close this page.",
    rejected_notice: "You rejected the request. Nothing was signed.",
    end_title: "Log out?",
    end_asks: "{client} asks to log you out of the Identity Service.",
    end_asks_unknown: "Do you want to log out of the Identity Service?",
    end_cancel: "Stay logged in",
};

static ZH_HANT: Texts = Texts {
    name_of_language: "繁體中文",
    brand: "數碼身份服務",
    skip: "跳至主要內容",
    language: "語言",
    error_title: "發生錯誤",
    error_next: "請返回再試，或回到電子服務重新開始。",
    error_request: "無法處理此要求。",
    error_denied: "你不可進行此操作，或你的登入已經結束。",
    error_not_found: "找不到所要求的內容。",
    error_too_many: "嘗試次數過多，請稍後再試。",
    error_unavailable: "服務繁忙或暫時無法使用，請稍後再試。",
    error_internal: "發生內部錯誤。",
    login_title: "登入",
    asks_login: "{client}（{dept}）要求你登入。",
    passkey_heading: "使用通行密鑰",
    passkey_intro: "使用手機、電腦或保安鑰匙上的通行密鑰登入。這是較安全的登入方式，假冒網站亦無法盜取。",
    passkey_button: "使用通行密鑰登入",
    passkey_unavailable: "此瀏覽器未能在此使用通行密鑰（或已停用 JavaScript）。請以密碼登入，或改用支援通行密鑰的瀏覽器。",
    passkey_failed: "通行密鑰未能使用或已取消。請再試，或以其他方式登入。",
    passkey_required: "此電子服務要求較高的認證級別：請使用通行密鑰登入，只用密碼並不足夠。",
    passkey_required_none: "如你尚未設定通行密鑰，請先以密碼登入帳戶頁面新增通行密鑰，然後再返回此處。",
    password_heading: "使用密碼",
    username: "用戶名稱",
    password: "密碼",
    login_button: "登入",
    consent_title: "分享你的資料？",
    consent_asks: "{client}（{dept}）要求取得：",
    consent_note: "你可隨時在帳戶頁面撤回此同意。",
    allow: "同意",
    deny: "拒絕",
    scope_openid: "你在此部門的識別碼",
    scope_profile: "你的英文及中文姓名",
    scope_email: "你的電郵地址",
    scope_phone: "你的電話號碼",
    scope_address: "你的地址",
    scope_offline: "在你離開後繼續存取（直至你撤回同意）",
    scope_other: "其他資料",
    account_title: "你的帳戶",
    level_passkey: "你以通行密鑰登入（較高認證級別）。",
    level_password: "你以密碼登入（較低認證級別）。",
    level_code: "你已用一次性代碼啟用帳戶。請立即新增通行密鑰，日後便以它登入。",
    passkeys_heading: "通行密鑰",
    passkeys_caption: "你的通行密鑰",
    col_name: "名稱",
    col_added: "新增日期",
    col_last_used: "最近使用",
    col_kind: "類型",
    col_actions: "操作",
    synced: "已同步至你的其他裝置",
    device_bound: "只存於一部裝置",
    never: "從未",
    rename: "重新命名",
    new_name_for: "{name} 的新名稱",
    remove: "移除",
    no_passkeys: "你尚未設定通行密鑰。",
    add_passkey_heading: "新增通行密鑰",
    add_passkey_intro: "你的裝置會要求你的指紋、面容或密碼。數碼身份服務永遠不會看到這些資料。",
    passkey_name: "新通行密鑰的名稱",
    passkey_name_default: "我的通行密鑰",
    add_passkey_button: "新增通行密鑰",
    consents_heading: "同意記錄",
    consents_caption: "你與之分享資料的電子服務",
    col_eservice: "電子服務",
    col_department: "部門",
    col_shared: "已分享",
    withdraw: "撤回",
    no_consents: "你未有與任何電子服務分享資料。",
    session_heading: "登入狀態",
    logout: "登出",
    logged_out_title: "已登出",
    logged_out: "你已登出。",
    not_logged_in: "你尚未登入。",
    scope_identity_document: "你的身份證明文件號碼",
    password_section: "密碼",
    new_password: "新密碼",
    new_password_hint: "最少 12 個字元；幾個互不相關的詞語既易記亦難猜。",
    set_password: "設定密碼",
    events_heading: "近期保安事件",
    events_caption: "你的帳戶最近發生的事",
    col_when: "時間",
    col_event: "事件",
    col_result: "結果",
    succeeded: "成功",
    failed: "失敗",
    activate_title: "啟用你的帳戶",
    activate_intro: "請輸入登記處提供的一次性代碼及你的出生日期，然後在下一頁新增通行密鑰。",
    activation_code: "一次性代碼",
    date_of_birth: "出生日期",
    date_of_birth_hint: "與你的身份證明文件相同，例如 1990-05-17。",
    activate_button: "啟用",
    scope_signing: "要求你簽署文件（每次均須使用你的通行密鑰）",
    sign_title: "簽署文件",
    sign_asks: "{client}（{dept}）要求你簽署一份文件。",
    sign_document: "文件",
    sign_description: "說明",
    sign_hash: "文件指紋",
    sign_code: "識別碼：",
    sign_code_hint: "請確認電子服務在此文件旁顯示相同的識別碼。如不相同，請拒絕。",
    sign_approve: "以通行密鑰批准及簽署",
    sign_password_note: "只有你的通行密鑰可以簽署；密碼不能簽署。",
    sign_reject: "拒絕",
    signed_notice: "你已簽署文件，可關閉此頁。",
    rejected_notice: "你已拒絕此要求，沒有簽署任何文件。",
    end_title: "登出？",
    end_asks: "{client}要求你登出數碼身份服務。",
    end_asks_unknown: "你要登出數碼身份服務嗎？",
    end_cancel: "保持登入",
};

/// A security event's name for the account page; unknown kinds show as they are logged.
pub fn event_label(lang: Lang, kind: &str) -> &str {
    let zh = lang == Lang::ZhHant;
    match kind {
        "login" => {
            if zh {
                "登入"
            } else {
                "Log in"
            }
        }
        "logout" => {
            if zh {
                "登出"
            } else {
                "Log out"
            }
        }
        "passkey.added" => {
            if zh {
                "新增通行密鑰"
            } else {
                "Passkey added"
            }
        }
        "passkey.removed" => {
            if zh {
                "移除通行密鑰"
            } else {
                "Passkey removed"
            }
        }
        "passkey.renamed" => {
            if zh {
                "重新命名通行密鑰"
            } else {
                "Passkey renamed"
            }
        }
        "password.set" => {
            if zh {
                "設定密碼"
            } else {
                "Password set"
            }
        }
        "account.activation" => {
            if zh {
                "啟用帳戶"
            } else {
                "Account activated"
            }
        }
        "citizen.enrolled" => {
            if zh {
                "登記帳戶"
            } else {
                "Account registered"
            }
        }
        "citizen.updated" => {
            if zh {
                "更新個人資料"
            } else {
                "Details updated"
            }
        }
        "citizen.status" => {
            if zh {
                "更改帳戶狀態"
            } else {
                "Account status changed"
            }
        }
        "citizen.recovery" => {
            if zh {
                "帳戶復原"
            } else {
                "Account recovery started"
            }
        }
        "data.released" => {
            if zh {
                "資料已提供予電子服務"
            } else {
                "Your data given to an e-service"
            }
        }
        "citizen.read" => {
            if zh {
                "登記人員查閱你的紀錄"
            } else {
                "Your record viewed by an officer"
            }
        }
        "consent.given" => {
            if zh {
                "同意分享資料"
            } else {
                "Consent given"
            }
        }
        "consent.withdrawn" => {
            if zh {
                "撤回同意"
            } else {
                "Consent withdrawn"
            }
        }
        "token.revoked" => {
            if zh {
                "撤銷存取權"
            } else {
                "Access revoked"
            }
        }
        "token.issued" => {
            if zh {
                "電子服務登入"
            } else {
                "Signed in to an e-service"
            }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_then_ui_locales_then_accept_language() {
        assert_eq!(Lang::pick(None, None, None), Lang::En);
        assert_eq!(
            Lang::pick(None, None, Some("zh-HK,zh;q=0.9,en;q=0.8")),
            Lang::ZhHant
        );
        assert_eq!(
            Lang::pick(None, None, Some("en;q=0.5, zh-TW;q=0.9")),
            Lang::ZhHant
        );
        assert_eq!(Lang::pick(None, None, Some("zh-CN, en;q=0.1")), Lang::En);
        assert_eq!(
            Lang::pick(None, Some("fr zh-Hant"), Some("en")),
            Lang::ZhHant
        );
        assert_eq!(
            Lang::pick(Some("en"), Some("zh-Hant"), Some("zh-HK")),
            Lang::En
        );
        assert_eq!(
            Lang::pick(Some("bogus"), None, Some("zh-Hant-HK")),
            Lang::ZhHant
        );
        assert_eq!(Lang::pick(None, None, Some("zh;q=0")), Lang::En);
    }
}
