"""The referral bundle sent to the local authority: content, JSON, PDF, encryption."""
